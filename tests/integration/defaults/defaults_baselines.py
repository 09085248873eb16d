"""The baselines the defaults must meet, computed in the test on the same training rows: scikit-learn models,
and a small CNN tuned by hand (two conv blocks, flattened, one hidden layer, AdamW with a one-cycle schedule)."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


def pixels(images: np.ndarray) -> np.ndarray:
    """(rows, h, w[, 3]) uint8 -> (rows, h*w*c) float in 0-1."""
    return images.reshape(len(images), -1).astype(np.float32) / 255.0


def sklearn_mlp_accuracy(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray) -> float:
    from sklearn.neural_network import MLPClassifier

    model = MLPClassifier(hidden_layer_sizes=(256,), max_iter=200, early_stopping=True, random_state=0)
    model.fit(pixels(train_x), train_y)
    return float((model.predict(pixels(test_x)) == test_y).mean())


def small_cnn_accuracy(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray,
                       epochs: int = 30) -> float:
    """conv32-pool-conv64-pool, flatten, fc128, dropout; AdamW 3e-3 one-cycle; light shift augmentation."""
    torch.manual_seed(0)

    def tensor(images: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(images.astype(np.float32) / 255.0)
        return x.unsqueeze(1) if x.dim() == 3 else x.permute(0, 3, 1, 2)

    x, y, x_test = tensor(train_x), torch.from_numpy(train_y.astype(np.int64)), tensor(test_x)
    mean, std = x.mean(dim=(0, 2, 3), keepdim=True), x.std(dim=(0, 2, 3), keepdim=True)
    x, x_test = (x - mean) / std, (x_test - mean) / std
    side = x.shape[-1] // 4
    classes = int(y.max()) + 1
    model = nn.Sequential(
        nn.Conv2d(x.shape[1], 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Dropout(0.3), nn.Linear(64 * side * side, 128), nn.ReLU(), nn.Dropout(0.3),
        nn.Linear(128, classes))
    batch = 64
    steps = epochs * ((len(x) + batch - 1) // batch)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=3e-3, total_steps=steps)
    for _ in range(epochs):
        model.train()
        order = torch.randperm(len(x))
        for start in range(0, len(x), batch):
            index = order[start:start + batch]
            if len(index) < 2:
                continue
            shifted = torch.roll(x[index], shifts=tuple(int(v) for v in torch.randint(-1, 2, (2,))), dims=(2, 3))
            loss = nn.functional.cross_entropy(model(shifted), y[index])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
    model.eval()
    with torch.no_grad():
        predicted = model(x_test).argmax(1).numpy()
    return float((predicted == test_y).mean())
