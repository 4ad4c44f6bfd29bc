"""``training.png``: loss and the held-out headline metric per epoch (matplotlib, if installed)."""
from __future__ import annotations


def plot_history(history: list[dict[str, float]], headline: str, path: str) -> str | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    epochs = [row["epoch"] for row in history]
    fig, (ax_loss, ax_metric) = plt.subplots(1, 2, figsize=(10, 4))
    for key in ("loss_train", "loss_validation"):
        if any(key in row for row in history):
            ax_loss.plot([r["epoch"] for r in history if key in r], [r[key] for r in history if key in r], label=key)
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("loss")
    ax_loss.legend()
    ax_metric.plot(epochs, [row[headline] for row in history], color="tab:green")
    ax_metric.set_xlabel("epoch")
    ax_metric.set_ylabel(f"held-out {headline}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
