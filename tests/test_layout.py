"""The PAPA layout: fixed slots for every role, for BERT-style and RoBERTa/MPNet-style tokenisers."""
import pandas as pd
import pytest

from papa_utils import TaskSplit, encode, get_task, load_task
from papa_utils.core.layout import IGNORE

L = 16


def split_of(task, **columns):
    return TaskSplit(get_task(task), "train", pd.DataFrame(columns), "test", "0" * 64)


@pytest.fixture(scope="module")
def bert_tok(minilm_l6):
    return minilm_l6[1]


@pytest.fixture(scope="module")
def mpnet_tok():
    from transformers import AutoTokenizer

    from papa_utils.core.models import model_folder

    return AutoTokenizer.from_pretrained(model_folder("mpnet-base"))


def tokens(tok, ids):
    return tok.convert_ids_to_tokens(ids.tolist())


def test_single_sentence_long_empty_and_batch_of_one(bert_tok):
    long = "the film is " + "very " * 40 + "good"
    e = encode(split_of("sst2", sentence=[long, "", "fine"], label=[1, 0, 1]), bert_tok, L)
    t = tokens(bert_tok, e.input_ids[0])
    assert t[0] == "[CLS]" and t[L - 1] == "[SEP]"
    assert t[1:L // 2] == ["the", "film", "is", "very", "very", "very", "very"]  # L/2-1 content tokens
    assert e.attention_mask[0].tolist() == [1] * (L // 2) + [0] * (L // 2 - 1) + [1]
    assert set(t[L // 2: L - 1]) == {"[PAD]"}
    assert e.attention_mask[1].tolist() == [1] + [0] * (L - 2) + [1]  # empty string: [CLS] ... [SEP]
    assert e.token_type_ids.sum() == 0 and e.labels.tolist() == [1, 0, 1]
    one = encode(split_of("sst2", sentence=["fine"], label=[1]), bert_tok, L)
    assert one.input_ids.shape == (1, L) and one.input_ids[0].equal(e.input_ids[2])


def test_pair_bert_style(bert_tok):
    e = encode(split_of("mrpc", sentence1=["a b c", "x"], sentence2=["d e", ""], label=[1, 0]), bert_tok, L)
    t = tokens(bert_tok, e.input_ids[0])
    assert t[:4] == ["[CLS]", "a", "b", "c"] and t[L // 2: L // 2 + 3] == ["[SEP]", "d", "e"] and t[L - 1] == "[SEP]"
    assert e.attention_mask[0].tolist() == [1] * 4 + [0] * 4 + [1] * 3 + [0] * 4 + [1]
    # token_type_ids move with their tokens: segment B and the final separator are type 1
    assert e.token_type_ids[0].tolist() == [0] * (L // 2 + 1) + [1, 1] + [0] * 4 + [1]
    t = tokens(bert_tok, e.input_ids[1])  # empty second text: separators still in their slots
    assert t[:2] == ["[CLS]", "x"] and t[L // 2] == "[SEP]" and t[L - 1] == "[SEP]"
    assert e.attention_mask[1].sum() == 4


def test_pair_roberta_style_keeps_double_separator_at_half(mpnet_tok):
    e = encode(split_of("rte", sentence1=["a b c"], sentence2=["d e"], label=[0]), mpnet_tok, L)
    t = tokens(mpnet_tok, e.input_ids[0])
    assert t[:4] == ["<s>", "a", "b", "c"]
    assert t[L // 2: L // 2 + 4] == ["</s>", "</s>", "d", "e"] and t[L - 1] == "</s>"
    assert e.token_type_ids is None  # MPNet takes no token types


def test_long_pair_is_cut_per_segment(bert_tok):
    words = " ".join("abcdefghijklmnopqrstuvwxyz")  # one token per letter
    e = encode(split_of("mrpc", sentence1=[words], sentence2=[words], label=[1]), bert_tok, L)
    t = tokens(bert_tok, e.input_ids[0])
    # the tokenizer truncates the pair to L first (longest first), then segments are cut to their slots
    assert t[0] == "[CLS]" and t[L // 2] == "[SEP]" and t[L - 1] == "[SEP]"
    assert t[1:L // 2] == list("abcdef") + ["[PAD]"] and t[L // 2 + 1:L - 1] == list("abcdef")
    assert e.attention_mask[0, L // 2:].tolist() == [1] * (L // 2)


def test_token_labels_sit_on_first_subtokens(bert_tok):
    e = encode(split_of("ner", tokens=[["Unflinchingly", "won"]], ner_tags=[[3, 0]]), bert_tok, L)
    t = tokens(bert_tok, e.input_ids[0])
    first, n_sub = 1, len(bert_tok.tokenize("Unflinchingly"))
    assert n_sub > 1
    assert t[0] == "[CLS]" and t[L - 1] == "[SEP]" and t[first + n_sub] == "won"
    expected = [IGNORE] * L
    expected[first], expected[first + n_sub] = 3, 0
    assert e.labels[0].tolist() == expected


def test_long_token_sequence_fills_up_to_l_minus_2(bert_tok):
    words = [f"w{i}" for i in range(50)]
    e = encode(split_of("pos", tokens=[words], pos_tags=[list(range(50))]), bert_tok, L)
    assert e.attention_mask[0].tolist() == [1] * L
    labelled = [v for v in e.labels[0].tolist() if v != IGNORE]
    assert labelled == sorted(labelled) and labelled[0] == 0  # words in order, first sub-token labelled


def test_real_data_layout(data_dir, bert_tok):
    e = encode(load_task("mrpc", "validation").head(50), bert_tok, 128)
    assert (e.input_ids[:, 0] == bert_tok.cls_token_id).all()
    assert (e.input_ids[:, 64] == bert_tok.sep_token_id).all() and (e.input_ids[:, 127] == bert_tok.sep_token_id).all()
    assert (e.token_type_ids[:, 65:][e.attention_mask[:, 65:].bool()] == 1).all()
    assert (e.token_type_ids[:, :65] == 0).all()
    ner = encode(load_task("ner", "validation").head(50), bert_tok, 128)
    words = load_task("ner", "validation").head(50).frame["tokens"]
    assert [(row != IGNORE).sum().item() for row in ner.labels] == [min(len(w), 126) for w in words]


def test_truncated_share_counts_the_examples_the_layout_cuts(minilm_l6):
    from papa_utils.core.layout import truncated_share

    _, tokenizer = minilm_l6
    short, long = "a short one", " ".join(["word"] * 40)
    data = split_of("sst2", sentence=[short, long, short, short], label=[0, 1, 0, 1])
    # L = 64 leaves 31 content slots for a single sentence: only the 40-word one is cut
    assert truncated_share(data, tokenizer, 64) == 0.25
    assert truncated_share(data, tokenizer, 128) == 0.0
