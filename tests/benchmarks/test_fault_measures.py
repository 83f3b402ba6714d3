"""The fault matrix's three counts, on files laid out as verl and the fake judge write them (no training here):
a rollout nobody judged in a group that got a reward is a silent zero; a masked or all-wrong group is not; a
pair the judge answered twice is re-judged (answers refused or hung are not answers)."""

from __future__ import annotations

import json


def write_rollouts(folder, step, groups):
    """verl's ``trainer.rollout_data_dir`` file of one step: rows with uid ``<group>_<rollout>_0``."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / f"{step}.jsonl", "w") as out:
        for group, rows in groups.items():
            for index, (truth, answer, score) in enumerate(rows):
                row = {"input": "q", "output": f"<think>x</think><answer>{answer}</answer>", "gts": truth}
                out.write(json.dumps({**row, "score": score, "step": step, "uid": f"{group}_{index}_0"}) + "\n")


def write_answers(path, answers):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(a) + "\n" for a in answers))


def label(truth, prediction, outcome="label:wrong"):
    return {"ground_truth": truth, "prediction": prediction, "outcome": outcome}


def test_a_rollout_nobody_judged_in_a_rewarded_group_is_a_silent_zero(faults, tmp_path):
    judge = faults.JudgeProcess(tmp_path / "judge", key="k")
    run = faults.TrainingRun(tmp_path / "run", judge)
    write_answers(
        judge.answers_log,
        [
            label("red circle", "red circle", "label:specific"),
            label("red circle", "circle", "label:less_specific"),
            label("blue cross", "cross", "503"),  # asked, never answered
            label("blue square", "square"),
        ],
    )
    write_rollouts(
        run.out / "rollouts",
        1,
        {
            # scored although one answer never got a verdict: one silent zero
            "g1": [
                ("Red Circle", "red circle", 1.0),
                ("Red Circle", "Circle!", 0.0),
                ("Red Circle", "red  square", 0.0),
            ],
            # masked (all 0) with a failed pair: no reward, no silent zero
            "g2": [("blue cross", "cross", 0.0), ("blue cross", "cross", 0.0)],
            # judged and scored: fine; an unparsable answer never reaches the judge
            "g3": [("blue square", "square", 0.0), ("blue square", "square", 1.0)],
        },
    )
    (run.out / "rollouts" / "1.jsonl").open("a").write(
        json.dumps({"output": "no answer tags", "gts": "blue square", "score": -1.0, "step": 1, "uid": "g3_2_0"}) + "\n"
    )
    assert faults.silent_zero_rewards(run, judge) == 1  # "red sq" in g1: no verdict, group rewarded


def test_rejudged_pairs_count_label_answers_beyond_the_first(faults):
    answers = [
        label("a", "b"),
        label("a", "b", "503"),
        label("a", "b", "hang"),
        label("a", "b", "bad_label"),
        label("a", "c"),
        label("a", "b", "label:specific"),  # the same pair answered again: paid twice
    ]
    assert faults.pairs_rejudged(answers) == 1
    assert faults.answered_pairs(answers) == {("a", "b"), ("a", "c")}


def test_steps_trained_twice_are_seen_in_the_merged_metrics(faults, tmp_path):
    run = faults.TrainingRun(tmp_path / "run", faults.JudgeProcess(tmp_path / "judge", key="k"))
    run.out.mkdir(parents=True)
    lines = [{"step": 1, "data": {"x": 1}}, {"step": 2, "data": {"x": 2}}]
    (run.out / "metrics.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    assert run.each_step_once() and sorted(run.steps_logged()) == [1, 2]
    with open(run.out / "metrics.jsonl", "a") as more:  # a resume that started again at step 2
        more.write(json.dumps({"step": 2, "data": {"x": 3}}) + "\n")
    assert not run.each_step_once() and run.steps_logged()[2] == {"x": 3}


def test_a_pair_the_judge_answered_that_the_cache_lacks_is_a_verdict_lost(faults, tmp_path):
    import asyncio

    from speciarl_verl.judge.sqlite_store import SQLiteVerdictStore

    judge = faults.JudgeProcess(tmp_path / "judge", key="k")
    run = faults.TrainingRun(tmp_path / "run", judge)
    run.out.mkdir(parents=True)
    write_answers(judge.answers_log, [label("a", "b"), label("a", "c"), label("a", "d", "503")])

    async def keep(keys):
        store = SQLiteVerdictStore(run.out / "verdicts.sqlite")
        try:
            await store.put_many(dict.fromkeys(keys, "wrong"), owner="w")
        finally:
            await store.aclose()

    asyncio.run(keep(["k1"]))
    assert faults.settle("case", run, judge, True, "").verdicts_lost == 1  # two answered, one kept
    asyncio.run(keep(["k2"]))
    assert faults.settle("case", run, judge, True, "").verdicts_lost == 0
