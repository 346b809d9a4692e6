"""The self-contained HTML summaries that `zernike3d qc` and `zernike3d compare` write
(``summary.html``): tables escaped, PNG figures inlined as data URIs, ASCII only, so
that a page reads the same opened alone or included in Snakemake's report."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path


def html_table(header: Sequence[object], rows: Iterable[Sequence[object]]) -> str:
    """An HTML table of ``header`` and ``rows`` (strings), escaped."""
    import html

    def cells(row: Sequence[object], tag: str) -> str:
        return "".join(f"<{tag}>{html.escape(str(value))}</{tag}>" for value in row)

    return "\n".join(["<table border=\"1\"><tr>" + cells(header, "th") + "</tr>",
                      *("<tr>" + cells(row, "td") + "</tr>" for row in rows), "</table>"])


def html_figure(path: str | Path, caption: str) -> str:
    """A <figure> of the PNG ``path`` inlined as a data URI, with ``caption``."""
    import base64
    import html

    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    return (f"<figure><img src=\"data:image/png;base64,{data}\" alt=\"{html.escape(Path(path).name)}\" "
            f"style=\"max-width: 100%\"><figcaption>{html.escape(caption)}</figcaption></figure>")


def write_ascii_html(path: Path, parts: Sequence[str]) -> None:
    """``parts`` (HTML strings) one per line into ``path``, ASCII only (other characters
    as character references), so it reads the same inlined into another page or opened
    alone."""
    path.write_bytes(("\n".join(parts) + "\n").encode("ascii", "xmlcharrefreplace"))
