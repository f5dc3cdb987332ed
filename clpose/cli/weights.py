"""`clpose weights`: the pretrained weights clpose knows by name, whether each is cached, and fetching them ahead of
time (on a cluster's login node, before jobs that run offline)."""

from __future__ import annotations

from typing import Annotated

import typer

app = typer.Typer(
    help="Pretrained weights by name: list them (with size, source and whether each is cached and verified) or fetch "
    "them ahead of time. Files go to torch.hub's cache (TORCH_HOME); CLPOSE_OFFLINE=1 never touches the network.",
    invoke_without_command=True,
)


@app.callback()
def _default(ctx: typer.Context) -> None:
    if ctx.invoked_subcommand is None:
        list_weights()


@app.command("list")
def list_weights(
    kind: Annotated[str | None, typer.Option(help="Only trunk or detector weights.")] = None,
) -> None:
    """Every known weights name: what clpose uses it for, its size, its cached file (verified against the hash in its
    name: verified, DAMAGED, or unchecked where the name has none; nothing is downloaded), and its source."""
    from rich.table import Table

    from clpose.console import console
    from clpose.errors import ClposeError
    from clpose.weights import MIRROR_ENV, cache_dir, offline, status

    if kind not in (None, "trunk", "detector"):
        raise ClposeError(f"--kind {kind!r}: expected trunk or detector")
    table = Table(title=f"pretrained weights (cache: {cache_dir()}{'; offline' if offline() else ''})")
    for column in ("name", "used as", "size MB", "what", "cached"):
        table.add_column(column, justify="right" if column == "size MB" else "left")
    rows = [r for r in status() if kind is None or r["kind"] == kind]
    for r in rows:
        state = "DAMAGED" if r["state"] == "damaged" else r["state"]
        table.add_row(r["name"], "; ".join(r["used_as"]) or "-", f"{r['size_mb']:.1f}", r["note"], state)
    console.print(table)
    for r in rows:
        if r["state"] == "damaged":  # never used: every use checks the hash
            console.print(
                f"damaged: {r['cached']} does not match its name's hash; remove it (rm {r['cached']}) and fetch "
                f"it again (clpose weights fetch {r['name']})",
                soft_wrap=True,  # a path cut in two cannot be pasted
            )
    source = rows[0]["source"].rsplit("/", 1)[0] if rows else "https://download.pytorch.org/models"
    console.print(f"source: {source}/ ({MIRROR_ENV}=URL or FOLDER for another server or an offline copy)")


@app.command("fetch")
def fetch(
    names: Annotated[
        list[str] | None,
        typer.Argument(
            help="Weights names (ResNet50_Weights.IMAGENET1K_V1), trunks (resnet50: its imagenet weights) or "
            "detectors (fasterrcnn_resnet50_fpn_v2)."
        ),
    ] = None,
    all_: Annotated[bool, typer.Option("--all", help="Every known weights file.")] = False,
    kind: Annotated[str | None, typer.Option(help="With --all: only trunk or detector weights.")] = None,
) -> None:
    """Download and verify weights into the cache, so that later runs (offline ones too) find them."""
    from clpose.console import console
    from clpose.errors import ClposeError
    from clpose.weights import catalog, lookup
    from clpose.weights import fetch as fetch_file

    if all_:
        entries = [e for e in catalog().values() if kind is None or e.kind == kind]
    elif names:
        entries = [lookup(name) for name in names]
    else:
        raise ClposeError("give weights names to fetch, or --all (`clpose weights` lists them)")
    for entry in entries:
        resolved = fetch_file(entry)
        console.print(f"{entry.name}: {resolved.path} (sha256 {resolved.sha256[:12]}...)")
