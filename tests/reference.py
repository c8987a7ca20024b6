"""Slow, obvious implementations that the fast code is held to. Dense; tiny inputs only."""

import numpy as np


def confidence_dense(plays: np.ndarray, alpha: float, epsilon: float) -> np.ndarray:
    # eq. (2) for every pair; unplayed pairs get 1 + alpha * log(1) = 1
    return 1.0 + alpha * np.log(1.0 + plays / epsilon)


def objective_dense(plays, X, Y, alpha, epsilon, regularization) -> float:
    # eq. (3) as written: a double sum over every user and every song
    C = confidence_dense(plays, alpha, epsilon)
    P = (plays > 0).astype(float)
    total = 0.0
    for u in range(plays.shape[0]):
        for i in range(plays.shape[1]):
            total += C[u, i] * (P[u, i] - X[u] @ Y[i]) ** 2
    return total + regularization * ((X**2).sum() + (Y**2).sum())


def least_squares_rows(plays, other, alpha, epsilon, regularization) -> np.ndarray:
    # x_u = (Y^T C_u Y + lambda I)^-1 Y^T C_u p(u), one row at a time, dense C_u
    C = confidence_dense(plays, alpha, epsilon)
    P = (plays > 0).astype(float)
    k = other.shape[1]
    out = np.zeros((plays.shape[0], k))
    for u in range(plays.shape[0]):
        Cu = np.diag(C[u])
        A = other.T @ Cu @ other + regularization * np.eye(k)
        out[u] = np.linalg.solve(A, other.T @ Cu @ P[u])
    return out


def als_dense(plays, X, Y, alpha, epsilon, regularization, iterations):
    objectives = []
    for _ in range(iterations):
        X = least_squares_rows(plays, Y, alpha, epsilon, regularization)
        Y = least_squares_rows(plays.T, X, alpha, epsilon, regularization)
        objectives.append(objective_dense(plays, X, Y, alpha, epsilon, regularization))
    return X, Y, objectives


def piece_notes_music21(score) -> np.ndarray:
    # music21 as documented: ties merged in a copy of the score, then every sounding note
    # of the flattened copy as (onset, duration, pitch), sorted by onset then pitch
    rows = [
        (float(n.offset), float(n.quarterLength), float(p.midi))
        for n in score.stripTies().flatten().notes
        if float(n.quarterLength) > 0
        for p in n.pitches
    ]
    notes = np.asarray(rows, dtype=np.float64).reshape(-1, 3)
    return notes[np.lexsort((notes[:, 2], notes[:, 0]))]
