"""`somna sync`: a store and its remote brought together: commit what is pending, fetch, merge so that no
memory is lost, push, and let the index catch up with what came in.

`sync_store(store)` is the one entry: the command calls it, and the daemon can call it every few minutes
(it returns a result and raises nothing for an offline remote or a refused push: work goes on locally).
The git work is in gitsync.py, the rules of a merge in merging.py; a version that lost a conflict becomes
an `edit` proposal whose reason says it came from a sync conflict.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import TypedDict

from somna import gitsync, history, merging, notes, redaction
from somna.errors import InvalidInput
from somna.gitsync import PushRejected, Remote, RemoteUnreachable
from somna.proposals import Proposal, diff_body, render
from somna.store import Store

log = logging.getLogger("somna.sync")

AUTHOR = "somna-sync"
EVERY = 300.0  # seconds between the daemon's syncs of a store that has a remote (SOMNA_SYNC_EVERY; 0: never)


class SyncResult(TypedDict):
    scope: str
    status: str  # synced | up to date | offline | blocked | rejected | refused (not its remote) | no remote
    message: str
    received: bool  # the remote brought something new
    merged: list[str]  # what the merge of files changed on both sides did
    proposals: list[str]  # versions that lost a conflict, queued for review
    pushed: bool
    indexed: int


def sync_store(store: Store, *, push: bool = True, squash: bool = False) -> SyncResult:
    """Sync one store with its configured remote (see the module's docstring)."""
    out: SyncResult = {
        "scope": store.scope,
        "status": "no remote",
        "message": "",
        "received": False,
        "merged": [],
        "proposals": [],
        "pushed": False,
        "indexed": 0,
    }
    remote = gitsync.remote_of(store.root)
    if remote is None:
        out["message"] = (
            f"the {store.scope} store has no remote: `somna init --remote URL` (a user store), or "
            "`somna init --project` in a project with an origin"
        )
        return out
    store.sync()  # hand edits and pending group commits are committed first (and a killed sync finished)
    try:
        gitsync.check_url(store.root, remote)
    except InvalidInput as exc:
        out["status"], out["message"] = "refused", str(exc)
        return out
    for attempt in range(gitsync.MAX_PUSH_TRIES):
        try:
            _round(store, remote, out, push=push, squash=squash)
            break
        except RemoteUnreachable as exc:
            out["status"] = "offline"
            out["message"] = (
                f"cannot reach {remote.url} ({exc}); nothing was lost: your memories stay here and go out "
                "with the next sync"
            )
            break
        except PushRejected as exc:
            if str(exc) != "non-fast-forward" or attempt == gitsync.MAX_PUSH_TRIES - 1:
                out["status"] = "rejected"
                out["message"] = (
                    f"{remote.url} refused the push ({exc}); what came in is merged here, and your memories "
                    "stay here until a push is allowed"
                )
                break
            log.info("the remote moved while we merged; fetching again")
    report = store.sync()  # the index catches up with the files that came in
    out["indexed"] = report["indexed"] + report["removed"]
    return out


def _round(store: Store, remote: Remote, out: SyncResult, *, push: bool, squash: bool) -> None:
    """Fetch, merge and push once (PushRejected "non-fast-forward": the remote moved in between; again)."""
    root = store.root
    with store.locked():
        store.flush_commits()
        theirs = gitsync.fetch(root, remote)
        if theirs is not None:
            _integrate(store, theirs, out)
        if not push:
            out["status"], out["message"] = "synced", "fetched and merged; nothing pushed (--no-push)"
            return
        if theirs is not None and history.head(root) == theirs:
            out["status"] = "up to date" if not out["received"] else "synced"
            out["message"] = out["message"] or "nothing new to push"
            return
        found = secrets_outgoing(root, theirs)
        if found and squash:
            squash_local(root, theirs)
            found = secrets_outgoing(root, theirs)
        if found:
            out["status"] = "blocked"
            out["message"] = blocked_message(found)
            return
        gitsync.push(root, remote)
        out["status"], out["pushed"] = "synced", True


def _integrate(store: Store, theirs: str, out: SyncResult) -> None:
    """Bring the remote's commit into the store: a fast-forward, or a merge with its conflicts resolved."""
    root = store.root
    head = history.head(root)
    if head is None or gitsync.is_ancestor(root, theirs, head):
        return
    out["received"] = True
    if gitsync.is_ancestor(root, head, theirs):
        gitsync.move_to(root, store.layout.somna, theirs)
        return
    tree, conflicts = gitsync.merge_tree(root, head, theirs)
    base, both = gitsync.changed_on_both(root, head, theirs)
    # every file git could not merge, and every note both sides changed even where git could (the same
    # second's `updated:` line lets an archive and an edit merge as text): somna's rules decide
    todo = {c.path: c.stages for c in conflicts}
    for path in both:
        if path not in todo and path.endswith(".md") and path.startswith(("memory/", "blocks/")):
            todo[path] = {}
    files: dict[str, str | None] = {}
    for path, stages in sorted(todo.items()):

        def text(
            stage: int, commit: str | None, path: str = path, stages: dict[int, str] = stages
        ) -> str | None:
            if stages:
                return gitsync.blob_text(root, stages.get(stage))
            return history.show(root, commit, path) if commit else None

        ours = merging.Side(text(2, head), gitsync.last_change(root, head, path), "this machine")
        other = merging.Side(text(3, theirs), gitsync.last_change(root, theirs, path), "the remote")
        resolution = merging.resolve(path, text(1, base), ours, other)
        files[path] = resolution.text
        files.update(resolution.extra)
        out["merged"].append(resolution.note)
        for loser in resolution.losers:
            proposal = _proposal(path, resolution.text or "", loser)
            files[proposal.path] = render(proposal)
            out["proposals"].append(proposal.id)
    message = f"sync: merge the remote's memories ({len(todo)} file(s) changed on both sides)"
    commit = gitsync.build_commit(root, tree, files, [head, theirs], message, AUTHOR)
    gitsync.move_to(root, store.layout.somna, commit)


def _proposal(path: str, merged: str, loser: merging.Loser) -> Proposal:
    """The review-queue entry of a version that lost a sync conflict (an `edit` proposal)."""
    version = notes.version_of(merged)
    if loser.op == "archive":
        fields = {"op": "archive", "base_version": version}
        body = f"This archive came from a sync conflict: {loser.why}. Accept it to archive the memory now.\n"
    else:
        fields = {"op": "replace", "base_version": version, "text": loser.body}
        current = notes.parse(merged).body if merged else ""
        body = (
            f"This version came from a sync conflict: {loser.why}. It is kept in history; accept this "
            "proposal to apply it instead.\n\n" + diff_body(current, loser.body, path)
        )
    proposal = Proposal(
        id="",
        kind="edit",
        target=loser.target,
        title=f"sync conflict: {loser.op} {loser.target} as on {loser.side}",
        author=AUTHOR,
        created=notes.now_iso(),
        reason=f"sync conflict: {loser.why}",
        fields=fields,
        body=body,
    )
    return proposal


def secrets_outgoing(root: Path, remote_head: str | None) -> list[tuple[str, str, list[str]]]:
    """(path, commit, kinds) of every likely secret in what a push would send."""
    found: list[tuple[str, str, list[str]]] = []
    for sha, path, added in gitsync.outgoing(root, remote_head):
        findings = redaction.scan(added)
        if findings:
            found.append((path, sha, sorted({f.kind for f in findings})))
    return found


def blocked_message(found: list[tuple[str, str, list[str]]]) -> str:
    files = sorted({path for path, _, _ in found})
    lines = [
        f"not pushed: {len(files)} file(s) hold a likely secret: "
        + ", ".join(f"{path} ({', '.join(kinds)}, commit {sha[:12]})" for path, sha, kinds in found[:5])
    ]
    lines.append(
        "Remove the secret from the file (somna redacts what agents write; this came from a hand edit), then "
        "`somna sync` again. If an earlier version of the file held it, `somna sync --squash` replaces this "
        "machine's unpushed commits by one commit of the files as they are now."
    )
    return "\n".join(lines)


def squash_local(root: Path, remote_head: str | None) -> str | None:
    """Replace the commits the remote does not have by one commit of the files as they are (the same tree):
    a secret in an earlier, never pushed version is then not sent."""
    head = history.head(root)
    if head is None:
        return None
    args = ["commit-tree", f"{head}^{{tree}}", "-m", "sync: this machine's changes since the last sync"]
    if remote_head:
        args += ["-p", remote_head]
    with history.running(root):
        new = history.git(root, *args).strip()
        history.git(root, "update-ref", "-m", "somna sync --squash", "HEAD", new, head)
    return new


class Schedule:
    """When the background daemon syncs its store with the store's remote: as it starts (a session began),
    every `EVERY` seconds while it runs, and as it leaves (the last session ended). A store without a remote
    is never synced; an offline remote or a refused push is logged, and the next turn tries again."""

    def __init__(self, store: Store, every: float | None = None) -> None:
        self.store = store
        self.every = float(os.environ.get("SOMNA_SYNC_EVERY", EVERY)) if every is None else every
        self.last: float | None = None

    def tick(self) -> SyncResult | None:
        now = time.monotonic()
        if self.every <= 0 or (self.last is not None and now - self.last < self.every):
            return None
        return self.now()

    def now(self) -> SyncResult | None:
        self.last = time.monotonic()
        if self.every <= 0 or gitsync.remote_of(self.store.root) is None:
            return None
        out = sync_store(self.store)
        log.info("sync with the remote: %s%s", out["status"], f": {out['message']}" if out["message"] else "")
        return out
