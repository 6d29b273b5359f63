"""lr-find.png: the smoothed loss against the learning rate (log scale), with the suggestions marked."""
from __future__ import annotations

from cnntrain.figures import new_figure, save_png


def lr_find_png(result: dict, path, title: str = ""):
    """Write the range test's loss against learning rate, the suggestion marked."""
    fig = new_figure(6.5, 4.2)
    ax = fig.add_subplot(1, 1, 1)
    ax.plot(result["rates"], result["losses"], "-", color="C0", label="smoothed training loss")
    ax.set_xscale("log")
    for key, colour, text in (("steepest", "C3", "suggested (steepest descent)"), ("min_over_10", "C2", "minimum / 10")):
        ax.axvline(result[key], color=colour, linestyle="--", linewidth=1, label=f"{text}: {result[key]:.2g}")
    ax.set_xlabel("learning rate")
    ax.set_ylabel("loss")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    ax.set_title(title or f"learning-rate range test, {result['steps_run']} steps")
    fig.tight_layout()
    return save_png(fig, path)
