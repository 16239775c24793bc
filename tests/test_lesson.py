"""The teaching notebook's "what to notice" sentences, computed from its numbers (synthetic here): they follow the
numbers, so they change when the numbers do."""
import torch

from papa_utils.teaching.lesson import intervention_notes, layer_notes, length_note


def test_the_layer_note_counts_where_the_least_dependent_heads_sit_and_compares_within_layers():
    scores = torch.tensor([[0.01, 0.02, 0.03, 0.30], [0.10, 0.20, 0.05, 0.40]])
    ranking = [(0, 0), (0, 1), (0, 2), (1, 2), (1, 0), (1, 1), (0, 3), (1, 3)]
    said = layer_notes(scores, ranking, share=0.25)
    assert said.startswith("2 of the 2 least input-dependent heads sit in layer 0, which holds 4 of the 8 heads.")
    assert "The layer means are 0.090, 0.188: input dependence rises with depth" in said
    assert said.endswith("layer 0: least (0, 0) 0.010, most (0, 3) 0.300; layer 1: least (1, 2) 0.050, most (1, 3) "
                         "0.400.")
    assert "do not simply rise with depth" in layer_notes(scores.flip(0), ranking)


def test_the_intervention_note_reads_papa_against_uniform():
    table = {"PAPA average": {"head a": 0.034, "all heads": 0.30}, "uniform": {"head a": 0.068, "all heads": 0.60}}
    said = intervention_notes(table, ["head a"])
    assert said.startswith("head a: PAPA's average 0.034, uniform 0.068; all heads: PAPA's average 0.300, uniform 0.600.")
    assert "0.50 to 0.50 times what uniform attention does: less, so the average keeps structure" in said
    table["PAPA average"]["head a"] = 0.066
    assert "0.97 to 0.97 times what uniform attention does: about as much" in intervention_notes(table, ["head a"])
    table["PAPA average"]["head a"] = 0.2
    assert "2.94 to 2.94 times what uniform attention does: more" in intervention_notes(table, ["head a"])
    table["PAPA average"]["head b"], table["uniform"]["head b"] = 0.01, 0.1
    assert intervention_notes(table, ["head a", "head b"]).endswith("as much for some heads and not for others. "
                                                                    "With every head replaced, the average moves "
                                                                    "them 0.50 times as far as uniform attention.")


def test_the_length_note_says_when_the_layout_differs_from_the_published_one():
    assert length_note("mrpc", 128, 128, 0.02) == "This run lays mrpc out at L = 128, as the published copy does."
    assert length_note("mrpc", 32, 128, 0.97).startswith("This run lays mrpc out at L = 32; the published copy uses "
                                                         "L = 128. At L = 32 the layout cuts 97% of these examples")
