"""A file that is a view of many input records (the ledger of its base rows and review
decisions, a DAM record of its changes), kept exact when writers on several hosts rebuild it at
the same moment, with no lock: a lock on a local file serialises one host only, and an object
store (S3) has none.

Each writer first writes its own input as an object of its own (one record per decision, one
object per change), then calls `rebuild_until_settled`, which repeats "list the inputs, rebuild
the view from them, list again" until the second listing shows nothing the rebuild did not fold
in.

Why no input is ever lost: let L be the last write of the view, made by writer W, which folded
the inputs F and, after L, listed S with every (name, version) of S in F. Take any input version
v, written by writer V before V called this function. If v were not in F it would not be in S, so
v's write completed after W's second listing began, hence after L. But V rebuilds the view after
writing v, so V wrote the view after L, and L was not the last write. So the last view write
folds every input written before its writer's second listing, and every input whose writer
returned. A writer killed between its input and its rebuild leaves the input durable; the next
rebuild, by anyone, folds it.

What this needs from the storage, which local disks, AWS S3 (since December 2020) and SeaweedFS
give: an object written whole under its name (write-then-rename, or one PUT), and a listing that
shows every object whose write completed before the listing began, with a version that changes
when an object is rewritten. A rebuild may read an input at a newer version than it listed: the
next listing then differs and the loop goes round once more.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TypeVar

from cutline.base.errors import CutlineError

T = TypeVar("T")

# Each round that does not settle saw a new input written while it ran; this many in a row
# means a storm of writers (or a listing that never settles), not bad luck.
MAX_ROUNDS = 64


class ViewNotSettledError(CutlineError):
    """The inputs of a view kept changing while it was rebuilt, round after round."""


def rebuild_until_settled(
    list_inputs: Callable[[], Mapping[str, str]],
    rebuild: Callable[[Mapping[str, str]], T],
    *,
    what: str,
    folded: Mapping[str, str] | None = None,
    max_rounds: int = MAX_ROUNDS,
) -> T:
    """Rebuild a view until a listing taken after its write shows no input it did not fold.

    ``list_inputs`` returns every input as name -> version (a version changes whenever the
    input is rewritten); ``rebuild`` writes the view from the inputs it is given (at the
    listed versions or newer) and returns what callers want back. ``folded``, when the caller
    already knows the inputs (it just listed them and wrote its own), saves the first listing.
    ``what`` names the view in the error raised when it never settles.
    """
    inputs = dict(list_inputs() if folded is None else folded)
    for _ in range(max_rounds):
        result = rebuild(inputs)
        listed = dict(list_inputs())
        if listed.items() <= inputs.items():
            return result
        inputs = listed
    raise ViewNotSettledError(
        f"{what} was rebuilt {max_rounds} times and its inputs changed every time (other "
        "writers kept adding to it); every input is kept, but the view may lag the newest.",
        hint="Run the step again once the other writers are done; it rebuilds the view from "
        "every input.",
    )
