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
    said = intervention_notes(table, ["head a"])
    assert "0.97 to 0.97 times what uniform attention does: about as much" in said
    assert "A hypothesis to test: the input-dependence score measures a head against its average" in said
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


def test_the_head_type_note_reads_each_type_against_its_own_layer():
    """Broad heads have the lowest mean only because they sit in the shallow layer; against the heads of their
    own layer the [CLS] heads depend least on the input."""
    import pandas as pd

    from papa_utils.teaching.lesson import head_type_notes

    table = pd.DataFrame({"layer": [0, 0, 0, 1, 1, 1], "type": ["broad", "broad", "[CLS]", "[CLS]", "other", "other"],
                          "input dependence": [0.02, 0.04, 0.01, 0.10, 0.30, 0.20],
                          "quarter": ["least dependent quarter", "second quarter", "least dependent quarter",
                                      "third quarter", "most dependent quarter", "most dependent quarter"]})
    said = head_type_notes(table, "type")
    # layer means 0.023 and 0.200: broad +0.007 on average, [CLS] (-0.013 - 0.100) / 2, other +0.050
    assert said == ("type: the least dependent quarter holds 1 broad, 1 [CLS]. By type, mean input dependence and, "
                    "holding depth fixed, the mean difference from the heads of the same layer: broad 0.030 (+0.007; "
                    "2 heads, layer 0), [CLS] 0.055 (-0.057; 2 heads, layers 0, 1), other 0.250 (+0.050; 2 heads, "
                    "layer 1). Within their layers, [CLS] heads depend least on the input.")


def test_the_part_of_speech_note_compares_the_heads_with_their_own_layer():
    import pandas as pd

    from papa_utils.teaching.lesson import pos_notes

    scores = torch.tensor([[0.1, 0.1, 0.1, 0.1], [0.2, 0.4, 0.2, 0.2]])
    best = pd.DataFrame({"layer": [0, 0, 1, 1], "head": [0, 1, 1, 2], "tag": ["NN"] * 4, "ratio": [1.0, 1.1, 3.0, 2.5]})
    said = pos_notes(best, scores, top=2)
    assert said == ("The 2 heads with the strongest part-of-speech preference sit in layer 1; against the mean of "
                    "their own layer, their input dependence is +0.050 on average (a layer's heads spread 0.087 around "
                    "its mean): more input-dependent than their layer, as a head that must find the words of one tag "
                    "should be.")
    scores[1] = torch.tensor([0.4, 0.1, 0.1, 0.2])  # the two heads now below their layer's mean, 0.2
    assert pos_notes(best, scores, top=2).endswith("-0.100 on average (a layer's heads spread 0.122 around its "
                                                   "mean): less input-dependent than the other heads of their layer, "
                                                   "so by this score their preference does not make them harder to "
                                                   "replace.")
    scores[1] = torch.tensor([0.0, 0.21, 0.2, 0.39])  # +0.005 against a spread of 0.14: about the same
    assert pos_notes(best, scores, top=2).endswith("+0.005 on average (a layer's heads spread 0.138 around its "
                                                   "mean): about as input-dependent as the other heads of their layer, "
                                                   "so by this score their preference neither marks them as harder "
                                                   "nor as easier to replace.")

    one_head = pos_notes(best.iloc[2:3].assign(head=0), torch.tensor([[0.1], [0.3]]), top=1)  # one head per layer
    assert one_head.startswith("The 1 head with the strongest part-of-speech preference sits in layer 1;")
    assert one_head.endswith("+0.000 on average (a layer's heads spread 0.000 around its mean): about as "
                             "input-dependent as the other heads of their layer, so by this score their preference "
                             "neither marks them as harder nor as easier to replace.")


def test_the_head_type_note_names_no_least_dependent_type_without_a_type_to_compare_it_with():
    import pandas as pd

    from papa_utils.teaching.lesson import head_type_notes

    table = pd.DataFrame({"layer": [0, 0, 1, 1], "type": ["broad", "broad", "other", "other"],
                          "input dependence": [0.02, 0.04, 0.2, 0.3], "quarter": ["least dependent quarter"] * 4})
    said = head_type_notes(table, "type")  # each type alone in its layer: nothing to hold depth fixed against
    assert said.endswith("other 0.250 (+0.000; 2 heads, layer 1).") and "depend least" not in said
    assert "depend least" not in head_type_notes(table.assign(type="broad"), "type")
