"""Tiny randomly initialised encoders of every supported family, built locally (no download)."""
import torch
from transformers import (AlbertConfig, AlbertModel, BertConfig, BertModel, DebertaConfig, DebertaModel,
                          DebertaV2Config, DebertaV2Model, DistilBertConfig, DistilBertModel, ElectraConfig,
                          ElectraModel, MPNetConfig, MPNetModel, RobertaConfig, RobertaModel, XLMRobertaConfig,
                          XLMRobertaModel)

LAYERS, HEADS, HIDDEN, VOCAB = 2, 12, 48, 120
COMMON = dict(vocab_size=VOCAB, hidden_size=HIDDEN, num_hidden_layers=LAYERS, num_attention_heads=HEADS,
              intermediate_size=64, max_position_embeddings=80, attention_probs_dropout_prob=0.1,
              hidden_dropout_prob=0.1)
FAMILIES = {
    "bert": (BertConfig, BertModel, {}),
    "roberta": (RobertaConfig, RobertaModel, {"pad_token_id": 1}),
    "electra": (ElectraConfig, ElectraModel, {"embedding_size": HIDDEN}),
    "xlm-roberta": (XLMRobertaConfig, XLMRobertaModel, {"pad_token_id": 1}),
    "albert": (AlbertConfig, AlbertModel, {"embedding_size": 16}),
    "distilbert": (DistilBertConfig, DistilBertModel, None),
    "deberta": (DebertaConfig, DebertaModel, {"relative_attention": True, "pos_att_type": ["c2p", "p2c"],
                                              "max_relative_positions": 16}),
    "deberta-v2": (DebertaV2Config, DebertaV2Model, {"relative_attention": True, "pos_att_type": ["c2p", "p2c"],
                                                     "position_buckets": 8, "max_relative_positions": 16}),
    "mpnet": (MPNetConfig, MPNetModel, {}),
}


def tiny_model(family: str, seed: int = 0, attention_dropout_only: bool = False):
    """attention_dropout_only: no dropout anywhere but on the attention probabilities (hidden dropout 0)."""
    config_cls, model_cls, extra = FAMILIES[family]
    hidden_dropout = 0.0 if attention_dropout_only else 0.1
    if extra is None:  # DistilBERT names its sizes differently
        config = config_cls(vocab_size=VOCAB, dim=HIDDEN, n_layers=LAYERS, n_heads=HEADS, hidden_dim=64,
                            max_position_embeddings=80, attention_dropout=0.1, dropout=hidden_dropout)
    else:
        config = config_cls(**{**COMMON, "hidden_dropout_prob": hidden_dropout}, **extra)
    config._attn_implementation = "eager"
    torch.manual_seed(seed)
    model = model_cls(config).eval()
    model.config.papa_model_name = f"tiny-{family}"
    return model


def tiny_batch(length: int = 16, seed: int = 0, pad_id: int = 0):
    """Three examples in the PAPA layout style: a padded gap in the middle, a short one, a full one."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, VOCAB, (3, length), generator=g)
    mask = torch.ones(3, length, dtype=torch.long)
    mask[0, 5: length // 2] = 0  # sentence pair with padding after segment A
    mask[1, 4: length - 1] = 0  # short single sentence, separator at L-1
    ids[mask == 0] = pad_id
    return {"input_ids": ids, "attention_mask": mask}
