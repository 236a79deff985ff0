"""Seaborn figures from the frames of analysis.stats; nothing here computes a statistic."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display needed
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

sns.set_theme(style="whitegrid", context="paper")


def save(fig, out: Path, name: str) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"{name}.png", out / f"{name}.pdf"]
    for path in paths:
        fig.savefig(path, dpi=150, bbox_inches="tight")
    plt.close(fig)
    return paths


def short_labels(frame: pd.DataFrame) -> pd.DataFrame:
    """Variants named by their intervention on an axis or legend (``ln_l2[l2.coef=0.001,...]`` ->
    ``ln_l2``) when that tells each apart; else their full labels. The tables keep the full ones."""
    label = {v: v.split("[")[0] for v in frame.variant.unique()}
    return frame.assign(variant=frame.variant.map(label)) if len(set(label.values())) == len(label) else frame


def _palette(frame: pd.DataFrame) -> dict:
    """A colour per variant (a method: an intervention with its own settings), baseline first."""
    names = sorted(frame.variant.unique(), key=lambda n: (n != "none", n))
    return dict(zip(names, sns.color_palette("colorblind", len(names))))


def _bands(data: pd.DataFrame, palette: dict, **_):
    """Lines with their CI bands, one per variant, on the current axes."""
    ax = plt.gca()
    for variant, rows in data.groupby("variant"):
        rows = rows.sort_values("step")
        ax.plot(rows.step, rows.value, color=palette[variant], label=variant)
        ax.fill_between(rows.step, rows.ci_low, rows.ci_high, color=palette[variant], alpha=0.2, linewidth=0)


def curves(
    frame: pd.DataFrame,
    col: str,
    ylabel: str,
    title: str,
    sharey: bool = True,
    log_panels: tuple[str, ...] = (),
) -> plt.Figure:
    """Small multiples of IQM curves with CI bands, one panel per value of ``col``; the panels named
    in ``log_panels`` on a log axis (a condition number spans orders of magnitude)."""
    frame = short_labels(frame)
    palette = _palette(frame)
    grid = sns.FacetGrid(
        frame,
        col=col,
        col_wrap=min(4, frame[col].nunique()),
        sharey=sharey,
        sharex=False,
        height=2.8,
        aspect=1.3,
    )
    grid.map_dataframe(_bands, palette=palette)
    grid.set_titles("{col_name}")
    grid.set_axis_labels("agent steps", ylabel)
    for name, ax in grid.axes_dict.items():
        if name in log_panels:
            ax.set_yscale("log")
    grid.add_legend(title="variant")
    grid.figure.suptitle(title, y=1.0, va="bottom")  # above the panel titles, however many lines
    return grid.figure


def interval_bars(frame: pd.DataFrame, col: str, xlabel: str, title: str) -> plt.Figure:
    """Point estimates with CI whiskers per variant, one panel per value of ``col``."""
    frame = short_labels(frame)
    palette = _palette(frame)
    panels = list(dict.fromkeys(frame[col]))
    fig, axes = plt.subplots(
        1,
        len(panels),
        figsize=(3.2 * len(panels), 1.2 + 0.45 * frame.variant.nunique()),
        squeeze=False,
        layout="constrained",
    )
    for ax, panel in zip(axes[0], panels):
        rows = frame[frame[col] == panel].sort_values("variant", key=lambda s: s.map(list(palette).index))
        sns.barplot(
            rows, x="value", y="variant", hue="variant", palette=palette, ax=ax, errorbar=None, legend=False
        )
        value, low, high = rows.value.to_numpy(), rows.ci_low.to_numpy(), rows.ci_high.to_numpy()
        ax.errorbar(
            value, range(len(rows)), xerr=[value - low, high - value], fmt="none", ecolor="black", capsize=3
        )
        ax.set(title=str(panel), xlabel=xlabel, ylabel="")
    fig.suptitle(title)
    return fig


def profiles(frame: pd.DataFrame, title: str) -> plt.Figure:
    frame = short_labels(frame)
    palette = _palette(frame)
    fig, ax = plt.subplots(figsize=(4.5, 3.2))
    _bands(frame.rename(columns={"tau": "step"}), palette)
    ax.set(xlabel="normalised score threshold tau", ylabel="fraction of runs with score > tau", title=title)
    ax.legend(title="variant")
    return fig
