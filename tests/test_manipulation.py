"""The manipulation design (issue 31): noise-injected demonstrations, "where next" keyframe
targets, action chunks decoded in one pass, executed with temporal ensembling (greedy) or open
loop (sampled), and the grasp breakdown of evaluation episodes."""

import numpy as np
import pytest
import torch

from agent import Policy
from agent.action_tokens import actions_to_bins, bins_to_actions, bins_to_positions
from train.collect.chunking import ChunkExecutor, ensemble_weights
from train.collect.episodes import ExpertActor, collect_episodes
from train.organize.waypoints import keyframes, waypoint_targets
from train.results.evaluate import grasp_breakdown
from train.updates.batching import episode_steps, step_logprobs
from train.updates.config import SFTConfig
from train.updates.sft import sft_update
from verifiers.episode import Job


@pytest.fixture(scope="module")
def policy():
    return Policy.from_preset("tiny_grasp", seed=0)


@pytest.fixture(scope="module")
def noisy_demos():
    jobs = [Job("pick_place", s) for s in range(6)]
    return collect_episodes(jobs, ExpertActor(noise=0.1, seed=5), num_envs=3)


def test_keyframes_are_gripper_changes_move_ends_and_the_last_step():
    actions = np.zeros((9, 4), np.float32)
    actions[:, 3] = -1.0
    actions[5:, 3] = 1.0  # the fingers close at step 5
    actions[:3, 0] = 1.0  # a saturated move ...
    actions[3, 0] = 0.4  # ... ending with a partial step: the move ends at step 4
    assert keyframes(actions, "gripper").tolist() == [5, 8]
    assert keyframes(actions, "gripper_and_moves").tolist() == [4, 5, 8]
    states = np.arange(10 * 4, dtype=np.float32).reshape(10, 4)
    targets = waypoint_targets(actions, states, count=2, kind="gripper_and_moves")
    assert targets.shape == (9, 2, 3)
    # step 0's next keyframes are 4 and 5; step 4's are 5 and 8; past the last, the last again
    np.testing.assert_array_equal(targets[0], states[[4, 5], :3])
    np.testing.assert_array_equal(targets[4], states[[5, 8], :3])
    np.testing.assert_array_equal(targets[8], states[[8, 8], :3])
    with pytest.raises(ValueError, match="unknown keyframe kind 'fingers'"):
        keyframes(actions, "fingers")


def test_a_noisy_demonstration_is_labelled_with_the_clean_expert_action(noisy_demos):
    episode = noisy_demos[0]
    executed, labels = episode.actions, bins_to_actions(episode.action_bins)
    # the moves differ by the injected noise, the finger command does not
    assert np.abs(executed[:, :3] - labels[:, :3]).max() > 0.05
    np.testing.assert_array_equal(executed[:, 3], labels[:, 3])
    assert (episode.step_info["label/expert"] == 1).all()
    assert episode.step_info["label/noise"].mean() > 0.05
    # the label is what the expert asks for from the state the noisy execution reached
    env = __import__("envs").make("pick_place")
    env.reset(seed=episode.env_seed)
    for t in range(5):
        expected = actions_to_bins(env.unwrapped.expert_action())
        np.testing.assert_array_equal(episode.action_bins[t], expected)
        env.step(executed[t])
    env.close()
    # the noise is the episode's own: the same job in another batch gives the same episode
    (again,) = collect_episodes([Job("pick_place", 0)], ExpertActor(noise=0.1, seed=5), num_envs=1)
    np.testing.assert_array_equal(again.actions, episode.actions)


def test_ensemble_weights_favour_the_newest_chunk():
    w = ensemble_weights(np.array([3, 2, 1, 0]), decay=0.1)
    assert w.sum() == pytest.approx(1.0)
    assert (np.diff(w) > 0).all()  # the newest (age 0) weighs most
    assert w[-1] / w[0] == pytest.approx(np.exp(0.3))


def test_an_opening_command_inside_the_horizon_opens_the_fingers():
    """Three chunks overlap at step 2; the newest says open (-1) where the older two said close.
    Blended the command would stay closed; the executed finger command is the newest chunk's."""
    executor = ChunkExecutor(chunk=4, execution="ensemble")
    executor.start([0])
    closing = np.tile([0.5, 0.0, 0.0, 1.0], (4, 1))
    opening = np.tile([-0.5, 0.0, 0.0, -1.0], (4, 1))
    for t, chunk in enumerate([closing, closing, opening]):
        executor.decide(0, chunk)
        action, _ = executor.greedy_action(0)
        if t < 2:
            executor.advance([0])
    assert action[3] == -1.0
    w = ensemble_weights(np.array([2, 1, 0]))
    assert action[0] == pytest.approx(0.5 * w[0] + 0.5 * w[1] - 0.5 * w[2], abs=1e-6)
    blended = ChunkExecutor(chunk=4, execution="ensemble_all")
    blended.start([0])
    for t, chunk in enumerate([closing, closing, opening]):
        blended.decide(0, chunk)
        action, _ = blended.greedy_action(0)
        if t < 2:
            blended.advance([0])
    assert action[3] > 0  # the measured failure: blended fingers never open


def test_sampled_chunks_record_each_executed_step_and_rl_ratio_is_one(policy):
    jobs = [Job("pick_place", s, f"g{g}") for s in range(2) for g in range(2)]
    episodes = collect_episodes(jobs, policy, num_envs=4, seed=1, max_episode_steps=11)
    for e in episodes:
        assert e.logprobs.shape == (e.length, 4) and np.isfinite(e.logprobs).all()
        # open loop: offsets 0, 1, 2, 3, 0, 1, ...
        np.testing.assert_array_equal(e.step_info["chunk/offset"], np.arange(e.length) % 4)
        np.testing.assert_array_equal(e.actions, bins_to_actions(e.action_bins))
    steps = episode_steps(episodes, chunk=policy.chunk, acted=True)
    with policy.mode(training=False):
        now = step_logprobs(policy, steps)
    ratio = torch.exp(now - torch.from_numpy(steps.old_logprobs))
    torch.testing.assert_close(ratio, torch.ones_like(ratio), atol=1e-4, rtol=0)


def test_greedy_chunks_are_ensembled_and_record_the_waypoint(policy):
    (episode,) = collect_episodes(
        [Job("pick_place", 3)], policy, num_envs=1, greedy=True, max_episode_steps=6
    )
    assert "chunk/offset" not in episode.step_info
    assert np.isfinite(episode.step_info["waypoint/x"]).all()


def test_sft_learns_chunks_and_waypoints(policy, noisy_demos):
    fresh = Policy.from_preset("tiny_grasp", seed=1)
    config = SFTConfig(lr=1e-3, batch_size=16, epochs=100, max_steps=30, augment_shift=2)
    metrics = sft_update(fresh, noisy_demos, config)
    assert metrics["train/sft_loss"] < metrics["train/sft_loss_first_epoch"]
    assert 0 < metrics["train/waypoint_error_cm"] < 30
    steps = episode_steps(noisy_demos, chunk=4, waypoints=2)
    assert steps.chunk_bins.shape == (len(steps), 4, 4) and steps.waypoints.shape == (
        len(steps),
        2,
        3,
    )
    last = np.flatnonzero(np.r_[steps.episode_index[1:] != steps.episode_index[:-1], True])
    assert not steps.chunk_mask[last, 1:].any()  # past the episode's end: padding


def test_grasp_breakdown_reads_the_grasp_reports(noisy_demos):
    assert all(e.is_success for e in noisy_demos)
    shares = grasp_breakdown(noisy_demos)["pick_place"]
    assert shares == {
        "grasped": 1.0, "grasped_other": 0.0, "failed_holding": 0.0, "let_go_elsewhere": 0.0,
        "no_grasp": 0.0,
    }  # fmt: skip
    # an episode that held the named cube to the end without success: failed while holding
    held = noisy_demos[0]
    held = type(held)(**{**vars(held), "is_success": False})
    held.step_info = {**held.step_info, "grasp/named": np.ones(held.length, np.float32)}
    shares = grasp_breakdown([held])["pick_place"]
    assert shares["failed_holding"] == 1.0 and shares["let_go_elsewhere"] == 0.0


def test_world_points_project_onto_the_frame_where_they_are_seen():
    env = __import__("envs").make("pick_place")
    obs, _ = env.reset(seed=2)
    u = env.unwrapped
    cube = u.body_pos(u.cube_color[u.goal["color"]])
    (col, row), behind = u.world_to_pixel(np.array([cube, [0.0, -1.0, 0.62]]))
    pixel = obs["image"][int(round(row)), int(round(col))].astype(int)
    other = [u.body_pos(n) for c, n in u.cube_color.items() if c != u.goal["color"]]
    assert np.isnan(behind).all()  # behind the camera
    # the named cube's colour is at its projected centre, not the table's grey
    assert pixel.max() - pixel.min() > 80, pixel
    assert all(np.linalg.norm(u.world_to_pixel(o[None])[0] - [col, row]) > 5 for o in other)
    env.close()


def test_videos_mark_the_waypoint(tmp_path, noisy_demos):
    import imageio.v2 as imageio

    from train.results.evaluate import MARK_COLOR, write_video

    episode = noisy_demos[0]
    marks = np.full((episode.length, 2), np.nan)
    marks[0] = [32.0, 32.0]
    path = write_video(episode, tmp_path / "v.mp4", scale=4, marks=marks)
    first = imageio.mimread(path)[0].astype(int)
    r, g, b = first[128, 122:134].mean(axis=0)  # the cross's arm, through the video's compression
    assert r - g > 60 and b - g > 60, (r, g, b)
    assert MARK_COLOR.tolist() == [255, 0, 255]


def test_a_chunk_policy_round_trips_with_its_queries_and_waypoint_head(policy, tmp_path):
    images = np.random.default_rng(0).integers(0, 256, (2, 64, 64, 3), dtype=np.uint8)
    instructions = ["put the red cube in the bin", "put the blue cube in the bin"]
    states = np.zeros((2, 4), np.float32)
    before = policy.act(images, instructions, states)
    policy.save_pretrained(tmp_path / "p")
    loaded = Policy.from_pretrained(tmp_path / "p")
    after = loaded.act(images, instructions, states)
    assert loaded.chunk == 4 and loaded.waypoints == 2
    np.testing.assert_array_equal(before.chunk_bins, after.chunk_bins)
    np.testing.assert_allclose(before.waypoints, after.waypoints, atol=1e-6)
    with pytest.raises(ValueError, match="waypoints and action_queries must be >= 0"):
        type(policy.backbone.config)(action_queries=-4)


def test_waypoint_tokens_are_learnt_decoded_before_the_queries_and_scored_as_acted(noisy_demos):
    """Way (a): the language model writes the waypoints as state-bin tokens; SFT teaches them by
    teacher forcing, acting decodes them greedily (one cached step each) before the queries,
    and RL's log-probs of the sampled chunk are those the policy acted with."""
    tokens = Policy.from_preset("tiny_grasp_tokens", seed=1)
    assert tokens.waypoints == 2 and tokens.waypoint_tokens == 2 and tokens.chunk == 4
    config = SFTConfig(lr=1e-3, batch_size=16, epochs=100, max_steps=30, augment_shift=2)
    metrics = sft_update(tokens, noisy_demos, config)
    assert metrics["train/sft_loss"] < metrics["train/sft_loss_first_epoch"]
    assert metrics["train/waypoint_loss"] < np.log(256)  # better than a uniform guess per token
    # acting: the cached greedy decode agrees with decoding from scratch
    part = episode_steps(noisy_demos[:1], chunk=4).select(np.arange(3))
    with policy_eval(tokens):
        acted = tokens.act(part.images, part.instructions, part.states)
        inputs = tokens._prompt_inputs(part.images, part.instructions, part.states)
        decoded = tokens._decode_waypoint_tokens(inputs)[0].numpy().reshape(3, 2, 3)
    np.testing.assert_allclose(acted.waypoints, bins_to_positions(decoded), atol=1e-6)
    # sampled chunks: RL's ratio at the acting weights is 1
    jobs = [Job("pick_place", s) for s in range(2)]
    episodes = collect_episodes(jobs, tokens, num_envs=2, seed=1, max_episode_steps=6)
    acted_steps = episode_steps(episodes, chunk=tokens.chunk, acted=True)
    with policy_eval(tokens):
        now = step_logprobs(tokens, acted_steps)
    ratio = torch.exp(now - torch.from_numpy(acted_steps.old_logprobs))
    torch.testing.assert_close(ratio, torch.ones_like(ratio), atol=1e-4, rtol=0)


def policy_eval(policy):
    return policy.mode(training=False)
