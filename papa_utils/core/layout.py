"""The fixed-length PAPA layout: every example puts the same role in the same slot.

Single sentence (length L): [CLS] + up to L/2-1 tokens from slot 0, padding, final separator at L-1.
Pair: first segment as above; from slot L/2 the separator(s) between segments (RoBERTa/MPNet: ``</s></s>``)
then the second segment, stopping before L-1; final separator at L-1.
Token task: [CLS] + up to L-2 tokens from slot 0, padding, separator at L-1; each word's label on its first
sub-token, -100 elsewhere.
Tokens are first produced by the tokenizer itself (truncation to L), then re-laid; token_type_ids move
with their tokens (segment B slots get type 1).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..settings.tasks import TaskSplit

IGNORE = -100


def pair_mask(token_mask: torch.Tensor) -> torch.Tensor:
    """[B, L] mask of real tokens -> [B, 1, L, L] mask m_i * m_j (the pairs of slots that both hold a token)."""
    m = token_mask.to(torch.float32)
    return (m[:, :, None] * m[:, None, :])[:, None]


@dataclass
class Encoded:
    """A task split in the PAPA layout: tensors of shape [n, L] (labels [n] or, for token tasks, [n, L])."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    token_type_ids: torch.Tensor | None
    labels: torch.Tensor
    words: torch.Tensor | None = None  # token tasks: [n, L] index of the word whose label a slot holds, else -1
    pad_id: int = 0  # the tokenizer's padding id (what padding slots hold)

    def __len__(self) -> int:
        return self.input_ids.shape[0]

    @property
    def length(self) -> int:
        return self.input_ids.shape[1]

    def head(self, n: int) -> "Encoded":
        """The first n examples."""
        cut = lambda t: None if t is None else t[:n]  # noqa: E731
        return Encoded(cut(self.input_ids), cut(self.attention_mask), cut(self.token_type_ids), cut(self.labels),
                       cut(self.words), self.pad_id)

    def model_inputs(self, index=slice(None)) -> dict[str, torch.Tensor]:
        out = {"input_ids": self.input_ids[index], "attention_mask": self.attention_mask[index]}
        if self.token_type_ids is not None:
            out["token_type_ids"] = self.token_type_ids[index]
        return out

    def batches(self, batch_size: int = 32):
        """Yield dicts of model inputs (and 'labels') of at most `batch_size` examples, in order."""
        for start in range(0, len(self), batch_size):
            index = slice(start, start + batch_size)
            yield {**self.model_inputs(index), "labels": self.labels[index]}


def special_template(tokenizer, pair: bool) -> tuple[int, int]:
    """How many special tokens the tokenizer puts before the first segment and after the last one."""
    seq_ids = tokenizer(*(["a", "b"] if pair else ["a"])).sequence_ids()
    content = [i for i, s in enumerate(seq_ids) if s is not None]
    return content[0], len(seq_ids) - 1 - content[-1]


def lay_out(seq_ids: list, length: int, first_segment_end: int, n_prefix: int, n_suffix: int) -> list[int]:
    """Target slot (or -1 = dropped) of every token of one tokenised example.

    `seq_ids` are the tokenizer's sequence ids (None for special tokens, 0 / 1 for segments A / B); the first
    `n_prefix` and last `n_suffix` tokens are the leading and final special tokens. The prefix and segment A
    fill slots from 0 up to `first_segment_end`; the specials between the segments and segment B start at
    L/2 and stop before the final specials, which end at slot L-1.
    """
    n = len(seq_ids)
    slots = [-1] * n
    slot, second = 0, length // 2
    for j in range(n - n_suffix):
        if j < n_prefix or seq_ids[j] == 0:
            if slot < first_segment_end:
                slots[j], slot = slot, slot + 1
        elif second < length - n_suffix:  # separators between the segments, then segment B
            slots[j], second = second, second + 1
    for k, j in enumerate(range(n - n_suffix, n)):
        slots[j] = length - n_suffix + k
    return slots


def _place(values, slots, length: int, fill: int) -> list[int]:
    row = [fill] * length
    for v, s in zip(values, slots):
        if s >= 0:
            row[s] = v
    return row


def _encode_rows(enc, n: int, length: int, template: tuple[int, int], pad_id: int, token_task: bool,
                 word_labels=None):
    ids, masks, types, labels, words = [], [], [], [], []
    n_prefix, n_suffix = template
    first_end = length - n_suffix if token_task else length // 2
    for i in range(n):
        slots = lay_out(enc.sequence_ids(i), length, first_end, n_prefix, n_suffix)
        ids.append(_place(enc["input_ids"][i], slots, length, pad_id))
        masks.append(_place([1] * len(slots), slots, length, 0))
        types.append(_place(enc["token_type_ids"][i], slots, length, 0))
        if word_labels is not None:  # the label of a word sits on its first sub-token
            word_ids, tags, previous, row, first = enc.word_ids(i), word_labels[i], None, [], []
            for w in word_ids:
                starts = w is not None and w != previous
                row.append(int(tags[w]) if starts else IGNORE)
                first.append(w if starts else -1)
                previous = w
            labels.append(_place(row, slots, length, IGNORE))
            words.append(_place(first, slots, length, -1))
    return ids, masks, types, labels, words


def encode(data: TaskSplit, tokenizer, length: int | None = None) -> Encoded:
    """Lay a task split out in the PAPA layout of fixed `length` (default: the task's L)."""
    task, frame = data.task, data.frame
    length = length or task.length
    if length < 8 or length % 2:
        raise ValueError(f"PAPA length L must be even and at least 8, got {length}")
    common = dict(truncation=True, max_length=length, return_token_type_ids=True)
    if task.token_task:
        words = [list(map(str, w)) for w in frame[task.text_columns[0]]]
        enc = tokenizer(words, is_split_into_words=True, **common)
        word_labels = list(frame[task.label_column])
    else:
        enc = tokenizer(*[frame[c].fillna("").astype(str).tolist() for c in task.text_columns], **common)
        word_labels = None
    template = special_template(tokenizer, task.is_pair)
    ids, mask, types, labels, words = _encode_rows(enc, len(frame), length, template, tokenizer.pad_token_id,
                                            task.token_task, word_labels)
    if not task.token_task:
        labels = frame[task.label_column].to_numpy()
    as_tensor = lambda rows: torch.tensor(rows, dtype=torch.long).reshape(len(frame), length)  # noqa: E731
    uses_types = "token_type_ids" in tokenizer.model_input_names
    return Encoded(as_tensor(ids), as_tensor(mask), as_tensor(types) if uses_types else None,
                   torch.tensor(labels, dtype=torch.float32 if task.is_regression else torch.long)
                   if not task.token_task else as_tensor(labels), as_tensor(words) if task.token_task else None,
                   tokenizer.pad_token_id)


def truncated_share(data: TaskSplit, tokenizer, length: int, room: int = 512) -> float:
    """Share of the examples of `data` that the layout of length L cuts: they keep fewer real tokens (token tasks:
    fewer labelled words) than in a layout with room for all of them (`room`, the models' 512 positions)."""
    if not len(data):
        raise ValueError("no examples: cannot measure truncation on an empty split")
    short, full = encode(data, tokenizer, length), encode(data, tokenizer, room)
    if data.task.token_task:
        kept, whole = (short.labels != IGNORE).sum(1), (full.labels != IGNORE).sum(1)
    else:
        kept, whole = short.attention_mask.sum(1), full.attention_mask.sum(1)
    return float((kept < whole).float().mean())
