"""Training rows: loss on answer tokens only, and cited rows that teach the bot's [n] convention."""

from __future__ import annotations

import re
from dataclasses import replace

from helpers import make_pairs
from transformers import AutoConfig

from medlora.data.records import QARecord
from medlora.models.architecture import describe_model
from medlora.retrieval import SourceIndex, document_key, leakage_filter, sources_from_records
from medlora.training.encoding import (
    IGNORE_INDEX,
    NOT_COVERED,
    Grounding,
    cite_in_answer,
    encode_record,
    grounded_rows,
    source_overlap,
)


def _records(n=12):
    return [QARecord(p["input"], p["output"], "test", focus=p["focus"]) for p in make_pairs(n)]


def test_loss_only_on_answer_tokens_for_causal_models(tiny_tokenizer, tiny_llama_dir):
    spec = describe_model(AutoConfig.from_pretrained(tiny_llama_dir))
    row = encode_record(tiny_tokenizer, spec, "What is psoriasis?", "A chronic plaque disease.", 64)
    labels, ids = row["labels"], row["input_ids"]
    prompt_len = labels.count(IGNORE_INDEX)
    assert prompt_len > 0 and len(labels) == len(ids)
    assert labels[prompt_len:] == ids[prompt_len:]
    assert ids[-1] == tiny_tokenizer.eos_token_id  # the model learns to stop
    assert "A chronic plaque disease." in tiny_tokenizer.decode(ids[prompt_len:], skip_special_tokens=True)


def test_seq2seq_labels_are_the_answer(tiny_tokenizer, tiny_t5_dir):
    spec = describe_model(AutoConfig.from_pretrained(tiny_t5_dir))
    row = encode_record(tiny_tokenizer, spec, "What is psoriasis?", "A chronic plaque disease.", 64)
    assert IGNORE_INDEX not in row["labels"]
    assert tiny_tokenizer.decode(row["labels"], skip_special_tokens=True) == "A chronic plaque disease."


def test_a_long_grounded_prompt_keeps_its_head_every_source_and_the_question(tiny_tokenizer, tiny_llama_dir):
    """Sources are shortened to fit the budget; the prompt's head (its format) and the question are never cut."""
    spec = describe_model(AutoConfig.from_pretrained(tiny_llama_dir))
    words = "plaque scale itch elbow knee scalp nail pitting arthritis"
    sources = [(n, f"Condition {n}", " ".join([words] * 12)) for n in (1, 2, 3)]
    question = "Which findings suggest psoriasis?"
    full = encode_record(tiny_tokenizer, spec, question, "Well-demarcated plaques.", 4096, sources)
    row = encode_record(tiny_tokenizer, spec, question, "Well-demarcated plaques.", 400, sources)
    prompt_len = row["labels"].count(IGNORE_INDEX)
    assert full["labels"].count(IGNORE_INDEX) > 400 and prompt_len <= 400 - 400 // 3  # it had to be fitted
    assert row["input_ids"][:4] == full["input_ids"][:4]  # the head of the prompt is kept
    prompt = tiny_tokenizer.decode(row["input_ids"][:prompt_len])
    assert all(f"[{n}] Condition {n}" in prompt for n in (1, 2, 3)) and "…" in prompt
    assert question in prompt
    assert "Well-demarcated plaques." in tiny_tokenizer.decode(row["input_ids"][prompt_len:], skip_special_tokens=True)


def test_grounded_rows_show_the_own_passage_among_distractors_and_cite_it():
    records = _records()
    rows = grounded_rows(records, Grounding(fraction=1.0, distractor_only=0.0, top_k=3), seed=0)
    for record, sources, answer in rows:
        assert len(sources) == 3
        (cited,) = {int(n) for n in re.findall(r"\[(\d)\]", answer)}
        number, title, text = sources[cited - 1]
        assert number == cited and title == record.focus and text in record.answer
        other_titles = [t for n, t, _ in sources if n != cited]
        assert record.focus not in other_titles  # distractor sources are other diseases
    assert grounded_rows(records, Grounding(fraction=1.0, top_k=3), seed=0) == rows  # seeded
    plain = grounded_rows(records, Grounding(fraction=0.0), seed=0)
    assert all(not sources and answer == r.answer for r, sources, answer in plain)


def test_distractor_only_rows_say_the_sources_do_not_cover_the_question():
    records = _records()
    rows = grounded_rows(records, Grounding(fraction=1.0, distractor_only=1.0, top_k=2), seed=1)
    for record, sources, answer in rows:
        assert len(sources) == 2 and record.focus not in [t for _, t, _ in sources]
        assert answer.startswith(NOT_COVERED) and answer.endswith(record.answer)
        assert not re.search(r"\[\d\]", answer)


def _record(question, answer, focus):
    return QARecord(question, answer, "test", focus=focus, url=f"https://example.org/{focus.replace(' ', '-')}")


def _harlequin() -> tuple[QARecord, QARecord]:
    """A question's own page and another document on its disease (an HPO-style annotation)."""
    own = _record("Is harlequin ichthyosis inherited?", "Harlequin ichthyosis is inherited in an autosomal "
                  "recessive pattern. Parents are carriers.", "Harlequin ichthyosis")
    annotation = QARecord("Harlequin ichthyosis inheritance", "Harlequin ichthyosis inheritance: autosomal "
                          "recessive. Associated genes: ABCA12.", "hpo", focus="Harlequin ichthyosis",
                          url="https://example.org/hpo/harlequin-ichthyosis")
    return own, annotation


def test_grounded_distractors_come_from_the_index_and_never_from_a_masked_disease():
    train = [
        _record("How is plaque psoriasis treated?", "Plaque psoriasis is treated with topical steroids.",
                "Plaque psoriasis"),
        _record("What causes acne?", "Acne is treated with retinoids; it involves sebum and plugging.", "Acne"),
        _record("What is atopic eczema?", "Atopic eczema is treated with emollients and topical steroids.",
                "Atopic eczema"),
        _record("What is rosacea?", "Rosacea is facial redness with papules and pustules.", "Rosacea"),
    ]
    held_out = [_record("What is guttate psoriasis?", "Guttate psoriasis follows a streptococcal throat infection "
                        "and shows small drop-like psoriasis plaques.", "Guttate psoriasis")]
    index = SourceIndex.build(sources_from_records(train + held_out, "medquad"))
    grounding = Grounding(fraction=1.0, distractor_only=1.0, top_k=3)
    unmasked = grounded_rows(train[:1], grounding, seed=0, index=index)
    assert "Guttate psoriasis" in [t for _, sources, _ in unmasked for _, t, _ in sources]  # the look-alike
    mask = index.mask(leakage_filter(held_out))
    masked = grounded_rows(train[:1], grounding, seed=0, index=index, mask=mask)
    shown = [t for _, sources, _ in masked for _, t, _ in sources]
    assert shown and "Guttate psoriasis" not in shown and "Plaque psoriasis" not in shown  # never its own disease


def test_related_rows_hide_the_own_passage_and_cite_another_document_on_the_same_disease():
    own = _record("Is harlequin ichthyosis inherited?", "Harlequin ichthyosis is inherited in an autosomal "
                  "recessive pattern. Parents are carriers.", "Harlequin ichthyosis")
    annotation = _record("Harlequin ichthyosis genes", "Harlequin ichthyosis is inherited in an autosomal recessive "
                         "pattern. Associated genes: ABCA12.", "Harlequin ichthyosis")
    annotation = QARecord(annotation.question, annotation.answer, "hpo", focus=annotation.focus,
                          url="https://example.org/hpo/harlequin-ichthyosis")
    others = [_record(f"Is {name} inherited?", f"{name} is inherited in an autosomal dominant pattern.", name)
              for name in ("Lamellar ichthyosis", "Ichthyosis vulgaris", "Epidermolytic ichthyosis")]
    index = SourceIndex.build(sources_from_records([own, annotation, *others], "medquad"))
    rows = grounded_rows([own], Grounding(fraction=1.0, related_only=1.0, top_k=3), seed=0, index=index)
    ((_, sources, target),) = rows
    (cited,) = {int(n) for n in re.findall(r"\[(\d)\]", target)}
    assert "ABCA12" in sources[cited - 1][2]  # the annotation, not the question's own page
    assert not any("Parents are carriers" in text for _, _, text in sources)
    assert [t for _, t, _ in sources].count("Harlequin ichthyosis") == 1  # the rest are distractors
    oracle = grounded_rows([own], Grounding(fraction=1.0, related_only=0.0, top_k=3), seed=0, index=index)
    assert any("Parents are carriers" in text for _, _, text in oracle[0][1])


def test_a_related_source_silent_or_contrary_on_the_pattern_is_shown_but_never_cited():
    own = _record("Is harlequin ichthyosis inherited?", "Harlequin ichthyosis is inherited in an autosomal "
                  "recessive pattern. Parents are carriers.", "Harlequin ichthyosis")
    others = [_record(f"Is {name} inherited?", f"{name} is inherited in an autosomal dominant pattern.", name)
              for name in ("Lamellar ichthyosis", "Ichthyosis vulgaris", "Epidermolytic ichthyosis")]
    # The overlap limit keeps the question's own page uncited, as open-book use never shows it.
    grounding = Grounding(fraction=1.0, related_only=1.0, top_k=3, max_source_overlap=0.5)
    for text, cited in (("Associated genes: ABCA12. Very frequent signs: Ectropion.", False),
                        ("Autosomal dominant. Associated genes: ABCA12.", False),
                        ("Autosomal recessive. Associated genes: ABCA12.", True)):
        annotation = QARecord("Harlequin ichthyosis annotation", f"Harlequin ichthyosis. {text}", "hpo",
                              focus="Harlequin ichthyosis", url="https://example.org/hpo/harlequin-ichthyosis")
        index = SourceIndex.build(sources_from_records([own, annotation, *others], "medquad"))
        ((_, sources, target),) = grounded_rows([own], grounding, seed=0, index=index)
        assert any("ABCA12" in shown or "Ectropion" in shown for _, _, shown in sources)  # shown either way
        assert not any("Parents are carriers" in shown for _, _, shown in sources)
        assert target.startswith(NOT_COVERED) is not cited
        assert bool(re.search(r"\[\d\]", target)) is cited
        if cited:
            assert "ABCA12" in sources[int(re.search(r"\[(\d)\]", target).group(1)) - 1][2]


def test_retrieval_order_shows_sources_as_the_search_ranks_them_and_changes_nothing_else():
    own, annotation = _harlequin()
    others = [_record(f"Is {name} inherited?", f"{name} is inherited in an autosomal dominant pattern.", name)
              for name in ("Lamellar ichthyosis", "Ichthyosis vulgaris", "Epidermolytic ichthyosis")]
    index = SourceIndex.build(sources_from_records([own, annotation, *others], "medquad"))
    ranked = [h.source.title for h in index.search(own.question, 12) if h.source.document != document_key(own)]
    for related_only in (1.0, 0.0):
        seen = set()
        for seed in range(8):
            grounding = Grounding(fraction=1.0, related_only=related_only, top_k=3, citation_style="lead")
            ((_, shuffled, target),) = grounded_rows([own], grounding, seed=seed, index=index)
            ordered = grounded_rows([own], replace(grounding, source_order="retrieval"), seed=seed, index=index)
            ((_, sources, ordered_target),) = ordered
            assert {t for _, t, x in sources} == {t for _, t, x in shuffled}  # the same sources, reordered
            (cited,) = {int(n) for n in re.findall(r"\[(\d)\]", ordered_target)}
            assert ordered_target.replace(f"[{cited}]", "[n]") == re.sub(r"\[\d\]", "[n]", target)
            if related_only:  # the annotation and distractors in the search's order
                titles = [t for _, t, _ in sources]
                assert titles == sorted(titles, key=ranked.index)
            else:  # the record's own passage (which the search would rank first) leads
                assert "Parents are carriers" in sources[0][2] and cited == 1
            seen.add(next(n for n, _, text in shuffled if "ABCA12" in text or "Parents are" in text))
        assert len(seen) > 1  # shuffled rows put the cited source anywhere


def test_sources_that_repeat_the_target_are_never_cited_under_the_overlap_limit():
    own = _record("Is harlequin ichthyosis inherited?", "Harlequin ichthyosis is inherited in an autosomal "
                  "recessive pattern. Parents are carriers.", "Harlequin ichthyosis")
    twin = QARecord("Harlequin ichthyosis inheritance", "Harlequin ichthyosis is inherited in an autosomal recessive "
                    "pattern. Parents are carriers of one copy.", "other-site", focus="Harlequin ichthyosis",
                    url="https://example.org/other-site/harlequin")
    annotation = QARecord("Harlequin ichthyosis genes", "Harlequin ichthyosis: autosomal recessive; ABCA12 variants; "
                          "congenital onset with thick plate-like scales.", "hpo", focus="Harlequin ichthyosis",
                          url="https://example.org/hpo/harlequin-ichthyosis")
    others = [_record(f"Is {name} inherited?", f"{name} is inherited in an autosomal dominant pattern.", name)
              for name in ("Lamellar ichthyosis", "Ichthyosis vulgaris", "Epidermolytic ichthyosis")]
    assert source_overlap(own.answer, twin.answer) > 0.9 > 0.5 > source_overlap(own.answer, annotation.answer)
    index = SourceIndex.build(sources_from_records([own, twin, annotation, *others], "medquad"))
    for seed in range(6):
        ((_, sources, target),) = grounded_rows(
            [own], Grounding(fraction=1.0, related_only=0.0, top_k=3, max_source_overlap=0.5), seed=seed, index=index)
        (cited,) = {int(n) for n in re.findall(r"\[(\d)\]", target)}
        assert "ABCA12" in sources[cited - 1][2]  # neither its own page nor the near-copy on another site
    alone = grounded_rows([own], Grounding(fraction=1.0, max_source_overlap=0.5), seed=0,
                          index=SourceIndex.build(sources_from_records([own, twin, *others], "medquad")))
    assert alone == [(own, [], own.answer)]  # nothing citable without copying: a closed-book row


def test_cite_in_answer_places_the_marker_after_the_first_sentence():
    assert cite_in_answer("Psoriasis is chronic. It has plaques.", 2) == "Psoriasis is chronic [2]. It has plaques."
    assert cite_in_answer("Lesions > 6 mm (e.g. larger). Next.", 1) == "Lesions > 6 mm (e.g. larger) [1]. Next."
    assert cite_in_answer("no sentence end", 3) == "no sentence end [3]"


def test_lead_citation_opens_the_answer():
    assert cite_in_answer("The rash is itchy. It fades.", 2, "lead") == "According to [2], the rash is itchy. It fades."
    assert cite_in_answer("Psoriasis is chronic.", 1, "lead") == "According to [1], Psoriasis is chronic."
    rows = grounded_rows(_records(), Grounding(fraction=1.0, top_k=3, citation_style="lead"), seed=0)
    assert all(answer.startswith("According to [") for _, _, answer in rows)


def test_lora_on_the_top_layers_only(tiny_llama_dir):
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM

    from medlora.config import TrainingConfig
    from medlora.training.lora import build_lora_config

    model = AutoModelForCausalLM.from_pretrained(tiny_llama_dir)
    layers = model.config.num_hidden_layers
    spec = describe_model(model.config)
    peft = get_peft_model(model, build_lora_config(TrainingConfig(lora_top_layers=1), spec, layers))
    lora_layers = {int(n.split(".layers.")[1].split(".")[0]) for n, _ in peft.named_parameters() if "lora_A" in n}
    assert lora_layers == {layers - 1}
    everywhere = build_lora_config(TrainingConfig(lora_top_layers=layers), spec, layers)
    assert everywhere.layers_to_transform is None  # as many layers as the model has: all of them


def test_bot_like_rows_show_only_sources_whose_title_the_question_names():
    """With ``min_title_match`` a grounded row shows what the bot would show for its question: look-alikes whose
    title the question names (so possibly fewer than ``top_k``), never a passage about something else; a question
    that names no source's title becomes a closed-book row, as it is answered without sources."""
    own, annotation = _harlequin()
    lookalike = _record("Is lamellar ichthyosis inherited?", "Lamellar ichthyosis is inherited in an autosomal "
                        "recessive pattern.", "Lamellar ichthyosis")
    elsewhere = _record("Is psoriasis inherited?", "Psoriasis is not inherited like harlequin ichthyosis; it is "
                        "inherited in a complex pattern, unlike ichthyosis.", "Psoriasis")
    index = SourceIndex.build(sources_from_records([own, annotation, lookalike, elsewhere], "medquad"))
    everything = Grounding(fraction=1.0, related_only=1.0, top_k=9, citation_style="lead")
    bot_like = replace(everything, min_title_match=0.5)
    for seed in range(6):
        ((_, plain, _),) = grounded_rows([own], everything, seed=seed, index=index)
        ((_, shown, target),) = grounded_rows([own], bot_like, seed=seed, index=index)
        assert "Psoriasis" in {t for _, t, _ in plain}
        assert {t for _, t, _ in shown} == {"Harlequin ichthyosis", "Lamellar ichthyosis"}
        (cited,) = {int(n) for n in re.findall(r"\[(\d)\]", target)}
        assert "ABCA12" in shown[cited - 1][2]
    unnamed = _record("Which gene is altered in this skin condition?", "ABCA12 variants cause it; both "
                      "parents usually carry one.", "Harlequin ichthyosis")
    ((_, sources, target),) = grounded_rows([unnamed], bot_like, seed=0, index=index)
    assert sources == [] and target == unnamed.answer


def test_own_passage_cut_before_its_pattern_is_not_cited_for_an_inheritance_question():
    from medlora.data.records import SNIPPET_CHARS

    signs = "thick scaly plates of skin over the whole body at birth, with ectropion and eclabium, " * 4
    own = _record("Is harlequin ichthyosis inherited?", f"Harlequin ichthyosis causes {signs.strip()}. It is "
                  "inherited in an autosomal recessive pattern.", "Harlequin ichthyosis")
    assert own.answer.index("autosomal") > SNIPPET_CHARS  # the shown snippet does not state the pattern
    others = [_record(f"Is {name} inherited?", f"{name} is inherited in an autosomal dominant pattern.", name)
              for name in ("Lamellar ichthyosis", "Ichthyosis vulgaris", "Epidermolytic ichthyosis")]
    index = SourceIndex.build(sources_from_records([own, *others], "medquad"))
    ((_, sources, target),) = grounded_rows([own], Grounding(fraction=1.0, top_k=3), seed=0, index=index)
    assert sources and target.startswith(NOT_COVERED) and not re.search(r"\[\d\]", target)
    short = replace(own, answer="Harlequin ichthyosis is inherited in an autosomal recessive pattern.")
    ((_, _, cited),) = grounded_rows([short], Grounding(fraction=1.0, top_k=3), seed=0, index=index)
    assert re.search(r"\[\d\]", cited)  # stated within the snippet: cited as before
