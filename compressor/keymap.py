"""Append-only key map of a stream whose clusters merge over time, without rewriting history.

Each frame's ``[H, W]`` entries are stored once, as the *slot* each token went to when it was written, in the
smallest unsigned dtype that holds the slot capacity (uint8 for up to 256 slots). Storage is a list of
preallocated blocks of ``BLOCK_FRAMES`` frames, so appending never copies earlier frames.

A slot is reused after its cluster merges away, so a stored slot id alone is ambiguous. Every frame therefore
points at a *label table* ``[S]`` (slot at write time -> label); a new table is recorded only when a slot got a
new label since the previous one. Labels are never reused. Labels belong to *groups* (one group per live
cluster) and each group lives in one slot: a merge moves the labels of the smaller group into the larger one
(amortised O(log labels) per label, never O(history)) and points that group at the surviving slot, so an old
entry resolves in O(1): ``slot_now = group_slot[label_group[table[frame_table[t]][stored[t, h, w]]]]``.

A live memory that runs for days keeps only its recent frames (``forget_before``: whole blocks, oldest first;
``offset`` is the first frame still held); older frames live in the stream's segments.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from compressor import state_check as check
from compressor.errors import FramesForgotten
from compressor.offline import smallest_uint_dtype
from compressor.serial import pack_array

BLOCK_FRAMES = 1024


class KeyMapStore:
    """Key map of one stream: ``[T, H, W]`` entries that resolve to current slots.

    Args:
        grid: ``(H, W)`` tokens per frame.
        slots: slot capacity ``S`` of the owning state.
    """

    def __init__(self, grid: tuple[int, int], slots: int) -> None:
        self.grid = (int(grid[0]), int(grid[1]))
        self.slots = int(slots)
        self.dtype = smallest_uint_dtype(self.slots)
        self.frames = 0
        self.offset = 0                            # first frame still held (a multiple of BLOCK_FRAMES)
        self._blocks: list[np.ndarray] = []        # each [BLOCK_FRAMES, H, W] self.dtype
        self._frame_table: list[np.ndarray] = []   # each [BLOCK_FRAMES] int32, table id per frame
        self._tables: list[np.ndarray] = []        # each [S] int64, label per slot (-1 free)
        self._current = np.full(self.slots, -1, dtype=np.int64)  # slot -> its label for new entries
        self._dirty = True                         # _current changed since the last recorded table
        self._labels = 0
        self._label_group = np.zeros(64, dtype=np.int32)  # label -> group (a group id is its first label)
        self._group_slot = np.zeros(64, dtype=np.int32)   # group -> slot holding its content now
        self._slot_group = np.full(self.slots, -1, dtype=np.int64)
        self._group_labels: dict[int, list[int]] = {}

    # ---- labels -------------------------------------------------------------------------------------
    def new_label(self, slot: int) -> int:
        """Give free ``slot`` a fresh label, in a fresh group (a new cluster starts there); return the label."""
        if self._labels == self._label_group.shape[0]:  # amortised doubling
            self._label_group = np.concatenate([self._label_group, np.zeros_like(self._label_group)])
            self._group_slot = np.concatenate([self._group_slot, np.zeros_like(self._group_slot)])
        label = self._labels
        self._labels += 1
        self._label_group[label] = label
        self._group_slot[label] = slot
        self._group_labels[label] = [label]
        self._slot_group[slot] = label
        self._current[slot] = label
        self._dirty = True
        return label

    def merge(self, src: int, dst: int) -> None:
        """Entries of slot ``src`` resolve to ``dst`` from now on; ``src`` becomes free."""
        big, small = int(self._slot_group[dst]), int(self._slot_group[src])
        if len(self._group_labels[small]) > len(self._group_labels[big]):
            big, small = small, big
        moved = self._group_labels.pop(small)
        self._label_group[np.asarray(moved, dtype=np.int64)] = big
        self._group_labels[big].extend(moved)
        self._group_slot[big] = dst
        self._slot_group[dst], self._slot_group[src] = big, -1
        self._current[src] = -1  # no entry is written to a free slot, so no new label table is needed

    # ---- entries ------------------------------------------------------------------------------------
    def append(self, slots: np.ndarray) -> None:
        """Append ``slots [T_c, H, W]`` (slot of every token of the chunk, as written now)."""
        if self._dirty:
            self._tables.append(self._current.copy())
            self._dirty = False
        table = len(self._tables) - 1
        done = 0
        while done < slots.shape[0]:
            block, row = divmod(self.frames - self.offset, BLOCK_FRAMES)
            if block == len(self._blocks):
                self._blocks.append(np.empty((BLOCK_FRAMES, *self.grid), dtype=self.dtype))
                self._frame_table.append(np.empty(BLOCK_FRAMES, dtype=np.int32))
            take = min(BLOCK_FRAMES - row, slots.shape[0] - done)
            self._blocks[block][row:row + take] = slots[done:done + take]
            self._frame_table[block][row:row + take] = table
            done += take
            self.frames += take

    def forget_before(self, frame: int) -> None:
        """Drop the entries of every whole block of frames that ends at or before ``frame``."""
        while self._blocks and self.offset + BLOCK_FRAMES <= min(frame, self.frames):
            self._blocks.pop(0)
            self._frame_table.pop(0)
            self.offset += BLOCK_FRAMES

    def resolve(self, start: int | None = None, stop: int | None = None) -> np.ndarray:
        """Current slot of every entry of frames ``[start, stop)`` (``start`` None: the oldest held):
        ``[T, H, W]`` int64.

        Raises:
            FramesForgotten: ``start`` is before the oldest frame still held (``offset``).
        """
        start = self.offset if start is None else start
        if start < self.offset:
            raise FramesForgotten(f"key map: expected frames from {self.offset} on (older ones were forgotten, see "
                                f"keymap_frames; the stream's segments hold them), got start {start}")
        stop = self.frames if stop is None else min(stop, self.frames)
        if stop <= start:
            return np.zeros((0, *self.grid), dtype=np.int64)
        stored = self._concat(self._blocks, start - self.offset, stop - self.offset).astype(np.int64)  # [T, H, W]
        frame_table = self._concat(self._frame_table, start - self.offset, stop - self.offset).astype(np.int64)
        tables = np.stack(self._tables)                                              # [n_tables, S]
        labels = tables[frame_table[:, None, None], stored]                          # [T, H, W]
        return self._group_slot[self._label_group[labels]].astype(np.int64)

    @staticmethod
    def _concat(blocks: list[np.ndarray], start: int, stop: int) -> np.ndarray:
        first, last = start // BLOCK_FRAMES, (stop - 1) // BLOCK_FRAMES
        joined = np.concatenate(blocks[first:last + 1]) if last > first else blocks[first]
        offset = first * BLOCK_FRAMES
        return joined[start - offset:stop - offset]

    def nbytes(self) -> int:
        """Bytes of live data (entries, frame tables, label tables, label map)."""
        per_frame = self.grid[0] * self.grid[1] * self.dtype.itemsize + 4
        return (self.frames - self.offset) * per_frame + len(self._tables) * self.slots * 8 + self._labels * 8

    # ---- serialisation ------------------------------------------------------------------------------
    def to_state(self) -> dict[str, Any]:
        """msgpack-able dict of the whole store (only used frames are written)."""
        empty = np.zeros((0, *self.grid), dtype=self.dtype)
        held = self.frames - self.offset
        return {
            "grid": list(self.grid), "slots": self.slots, "frames": self.frames, "offset": self.offset,
            "stored": pack_array(self._concat(self._blocks, 0, held) if held else empty),
            "frame_table": pack_array(self._concat(self._frame_table, 0, held) if held
                                      else np.zeros(0, dtype=np.int32)),
            "tables": pack_array(np.stack(self._tables) if self._tables else np.zeros((0, self.slots), np.int64)),
            "current": pack_array(self._current), "dirty": self._dirty,
            "label_group": pack_array(self._label_group[:self._labels]),
            "group_slot": pack_array(self._group_slot[:self._labels]), "slot_group": pack_array(self._slot_group),
        }

    @classmethod
    def from_state(cls, state: dict[str, Any], expected: tuple[tuple[int, int], int, int],
                   active: np.ndarray) -> KeyMapStore:
        """Inverse of ``to_state``, for a state whose ``expected = (grid, slots, frames)`` and whose ``active [S]``
        bool slots are known: every array, id and label link is checked, and every entry must resolve to an
        active slot (O(frames), once per restore).

        Raises:
            InvalidState: the first thing that is inconsistent, named.
        """
        grid, slots, frames = expected
        check.keys(state, "keymap", {"grid", "slots", "frames", "offset", "stored", "frame_table", "tables", "current",
                                     "dirty", "label_group", "group_slot", "slot_group"})
        check.expect(state["grid"] == list(grid) and state["slots"] == slots and state["frames"] == frames,
                     "keymap", f"grid {list(grid)}, {slots} slots, {frames} frames",
                     (state["grid"], state["slots"], state["frames"]))
        store = cls(grid, slots)
        offset = check.integer(state["offset"], "keymap.offset", 0, frames)
        check.expect(offset % BLOCK_FRAMES == 0, "keymap.offset", f"a multiple of {BLOCK_FRAMES}", offset)
        held = frames - offset
        stored = check.array(state["stored"], "keymap.stored", store.dtype, (held, *grid))
        frame_table = check.array(state["frame_table"], "keymap.frame_table", np.int32, (held,))
        tables = check.array(state["tables"], "keymap.tables", np.int64, (-1, slots))
        current = check.array(state["current"], "keymap.current", np.int64, (slots,))
        label_group = check.array(state["label_group"], "keymap.label_group", np.int32, (-1,))
        labels = label_group.shape[0]
        group_slot = check.array(state["group_slot"], "keymap.group_slot", np.int32, (labels,))
        slot_group = check.array(state["slot_group"], "keymap.slot_group", np.int64, (slots,))
        check.expect(isinstance(state["dirty"], bool), "keymap.dirty", "a bool", state["dirty"])
        check.ids(stored, "keymap.stored", 0, slots)
        check.ids(frame_table, "keymap.frame_table", 0, tables.shape[0])
        for name, values in (("tables", tables), ("current", current), ("slot_group", slot_group)):
            check.ids(values, f"keymap.{name}", -1, labels)
        check.ids(label_group, "keymap.label_group", 0, labels)
        check.ids(group_slot, "keymap.group_slot", 0, slots)
        live = slot_group[active]
        check.expect(bool(np.all(live >= 0)) and sorted(live.tolist()) == sorted(set(label_group.tolist())),
                     "keymap.slot_group", "one group per active slot, the groups of the labels", live.tolist())
        check.expect(bool(np.all(slot_group[~active] == -1) and np.all(current[~active] == -1)), "keymap",
                     "free slots without group or label", slot_group[~active].tolist())
        check.expect(bool(np.all(label_group[live] == live) and np.all(group_slot[live] == np.flatnonzero(active))
                          and np.all(current[active] >= 0)), "keymap", "groups that are their own first label, "
                     "held by their slot, and a label per active slot", live.tolist())
        check.expect(bool(np.all(label_group[current[active]] == live)), "keymap.current",
                     "the label of each active slot in that slot's group", current[active].tolist())
        # Not dirty: new entries reuse the last table, so it must give every labelled slot its current label
        # (a merge frees a slot without a new table: no entry is written to a free slot).
        check.expect(state["dirty"] or (tables.shape[0] > 0 and bool(np.all((current < 0) | (tables[-1] == current)))),
                     "keymap.dirty", "True unless the last table holds the current labels", state["dirty"])
        store._tables, store._current, store._dirty = list(tables), current, state["dirty"]
        store._labels = labels
        size = max(64, 2 * labels)
        store._label_group, store._group_slot = np.zeros(size, dtype=np.int32), np.zeros(size, dtype=np.int32)
        store._label_group[:labels], store._group_slot[:labels] = label_group, group_slot
        store._slot_group = slot_group
        for label, group in enumerate(label_group.tolist()):  # group -> labels (order within a list is irrelevant)
            store._group_labels.setdefault(group, []).append(label)
        # Entries go back into fresh blocks through append-equivalent copies, one table id per frame.
        for block in range(0, held, BLOCK_FRAMES):
            part = stored[block:block + BLOCK_FRAMES]
            store._blocks.append(np.empty((BLOCK_FRAMES, *store.grid), dtype=store.dtype))
            store._blocks[-1][:part.shape[0]] = part
            store._frame_table.append(np.empty(BLOCK_FRAMES, dtype=np.int32))
            store._frame_table[-1][:part.shape[0]] = frame_table[block:block + BLOCK_FRAMES]
        store.frames, store.offset = frames, offset
        for block in range(0, held, BLOCK_FRAMES):  # every entry names a label that lives in an active slot
            part = slice(block, block + BLOCK_FRAMES)
            entry_labels = tables[frame_table[part, None, None], stored[part]]
            check.expect(bool(np.all(entry_labels >= 0)), "keymap.stored", "entries of labelled slots",
                         "an entry of a slot that had no label")
            check.expect(bool(np.all(active[group_slot[label_group[entry_labels]]])), "keymap.stored",
                         "entries that resolve to active slots", "an entry of a merged-away cluster")
        return store
