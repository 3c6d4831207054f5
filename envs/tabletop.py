"""TabletopEnv: the gymnasium base of every task (scene, end-effector gripper, observations, info).

A task subclasses it and supplies its MJCF (which includes `tabletop.xml`), its instruction
templates, and five methods: `_reset_task` (seeded placement; returns the named goal),
`_possible_goals`, `_goal_satisfied`, `_reward_terms` and `expert_action`.
"""

from __future__ import annotations

import abc
import re
import string
from pathlib import Path
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
from gymnasium import spaces

# isort: off
from envs import IMAGE_SIZE_RANGE, rendering  # rendering selects the GL backend: before mujoco
import mujoco
# isort: on

from envs import contract
from envs.colors import COLORS  # noqa: F401 -- tasks import COLORS from here

ACTION_DIM = 4
MAX_MOVE = 0.04
"""Metres the gripper target moves per step at |action| = 1, per axis."""
SUBSTEPS = 10
"""Physics steps per control step (10 x 10 ms = 10 Hz control)."""
RAMP_CHUNKS = 2
"""The gripper target moves in this many equal increments within one step (contact forces are
sampled after each)."""
FINGER_RAMP_SUBSTEPS = 5
"""The fingers' position target moves from where it was to the commanded opening over this many
physics substeps, not at once: fingers that jump to a closed target slam into the cube and, a few
millimetres off centre, shoot it out of the grasp (the scripted expert with Gaussian noise of 0.1
on its moves grasped in 80% of PickPlaceCube episodes and succeeded in 50%; with the ramp, 100%
and 100%: BENCHMARKS.md, "Manipulation, session 8")."""
FINGER_OPEN = 0.04
"""Finger slide at the fully open gripper (gap = 2 x this)."""
TIP_LOW = np.array([-0.22, -0.2, 0.008])
TIP_HIGH = np.array([0.22, 0.2, 0.22])
"""Workspace bounds of the fingertip point (metres, world frame; the table top is z = 0)."""
STATE_LOW = np.array([-1.0, -1.0, -1.0, -0.01], np.float32)
STATE_HIGH = np.array([1.0, 1.0, 1.0, 0.1], np.float32)
"""Bounds of `state` (fingertip xyz, finger gap), wide enough for any reachable state."""
SHARED_SCENE = Path(__file__).with_name("tabletop.xml")
"""The scene every task's MJCF includes (`<include file="tabletop.xml"/>`); it is found even when
the task's MJCF lives outside `envs/`."""
INSTRUCTION_CHARSET = string.ascii_letters + string.digits + " ,.'-"


def finger_slide(command: float) -> float:
    """Each finger's slide target (m) for a finger command in [-1, 1] (-1 open, +1 closed)."""
    return FINGER_OPEN * (1.0 - float(np.clip(command, -1.0, 1.0))) / 2.0


def _parse_image_size(image_size: Any) -> tuple[int, int]:
    lo, hi = IMAGE_SIZE_RANGE
    sizes = (image_size, image_size) if isinstance(image_size, int | np.integer) else image_size
    try:
        height, width = sizes
        ok = all(isinstance(s, int | np.integer) and not isinstance(s, bool) for s in sizes)
    except (TypeError, ValueError):
        ok = False
    if not ok or isinstance(image_size, bool) or not (lo <= height <= hi and lo <= width <= hi):
        raise ValueError(
            f"invalid image_size {image_size!r}; expected an int or (height, width) of ints "
            f"in [{lo}, {hi}]"
        )
    return int(height), int(width)


def _load_model(cls: type) -> mujoco.MjModel:
    """The task's MJCF, with the shared scene supplied for its `<include file="tabletop.xml"/>`."""
    path = getattr(cls, "model_path", None)
    if path is None or not Path(path).is_file():
        raise contract.TaskContractError(
            f"task {cls.__name__}: model_path is {path!r}, not an MJCF file; set "
            'model_path = Path(__file__).with_name("<task>.xml") and write the MJCF there'
        )
    try:
        return mujoco.MjModel.from_xml_path(
            str(path), assets={SHARED_SCENE.name: SHARED_SCENE.read_bytes()}
        )
    except ValueError as err:  # MuJoCo's parse errors name a line, not the file
        raise contract.TaskContractError(
            f"task {cls.__name__}: its MJCF {str(path)!r} does not load: {err}"
        ) from err


class TabletopEnv(gym.Env, abc.ABC):
    """A MuJoCo tabletop task with a mocap-driven gripper, a fixed camera and a text instruction.

    Action (4,): (dx, dy, dz) in [-1, 1] moves the fingertip target by up to `MAX_MOVE` m per
    axis; the 4th entry sets the fingers (-1 open, +1 closed). Observation: `image` uint8
    [H, W, 3] from the `front` camera, `state` float32 [4] (fingertip xyz in metres, finger gap
    in metres), `instruction` str. `reset(options={"instruction": text})` keeps the seed's scene
    but names the goal `text` instead of the drawn one (see `possible_instructions`).
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["rgb_array"], "render_fps": 10}
    model_path: ClassVar[Path]
    """The task's MJCF, beside its module."""
    instruction_templates: ClassVar[tuple[str, ...]]
    """str.format templates over the goal's fields; the first is the canonical form."""

    _scene_checked: ClassVar[set[type]] = set()
    """Task classes whose first scene passed `contract.check_scene` in this process."""
    expert_slack: float = 1.0
    """Multiplies the scripted expert's alignment tolerances (how far off its target it still goes
    ahead rather than re-aligning first); 1 is the expert of the demonstrations. `expert_label`
    answers with another value for one call."""

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "instruction_templates" in cls.__dict__:
            contract.check_task_class(cls)

    def __init__(self, image_size: int | tuple[int, int] = 64, render_mode: str | None = None):
        self.image_height, self.image_width = _parse_image_size(image_size)
        if render_mode not in (None, "rgb_array"):
            raise ValueError(
                f"unsupported render_mode {render_mode!r}; expected None or 'rgb_array'"
            )
        self.render_mode = render_mode
        self.model = _load_model(type(self))
        self.data = mujoco.MjData(self.model)
        m = self.model
        self._mocap = m.body_mocapid[m.body("gripper_target").id]
        self._tip_site = m.site("tip").id
        self._finger_qpos = [m.jnt_qposadr[m.joint(n).id] for n in ("finger_left", "finger_right")]
        self._finger_ctrl = [m.actuator(n).id for n in ("finger_left", "finger_right")]
        self.finger_geoms = frozenset(m.geom(n).id for n in ("finger_left", "finger_right"))
        self._gripper_qpos = m.jnt_qposadr[m.joint("gripper_x").id]
        self._tip_offset = m.site_pos[self._tip_site].copy()
        table = m.geom("table")
        self._table_low = table.pos[:2] - table.size[:2]
        self._table_high = table.pos[:2] + table.size[:2]
        self._object_xyz = np.array(
            [
                m.jnt_qposadr[j] + np.arange(3)
                for j in range(m.njnt)
                if m.jnt_type[j] == mujoco.mjtJoint.mjJNT_FREE
            ],
            dtype=int,
        ).reshape(-1, 3)
        """qpos indices of each free object's position, [n_objects, 3]."""
        self._renderer: rendering.CameraRenderer | None = None
        self._image: np.ndarray | None = None
        self._contact_force = 0.0
        self._geom_masks: dict[frozenset[int], np.ndarray] = {}
        self.goal: dict[str, str] = {}
        self.instruction = ""
        self.action_space = spaces.Box(-1.0, 1.0, (ACTION_DIM,), np.float32)
        self.observation_space = spaces.Dict(
            {
                "image": spaces.Box(0, 255, (self.image_height, self.image_width, 3), np.uint8),
                "state": spaces.Box(STATE_LOW, STATE_HIGH, (4,), np.float32),
                "instruction": spaces.Text(
                    max_length=128, min_length=1, charset=INSTRUCTION_CHARSET
                ),
            }
        )

    # ---- hooks a task implements -------------------------------------------------------------

    @abc.abstractmethod
    def _reset_task(self, rng: np.random.Generator) -> dict[str, str]:
        """Place objects and fixtures, colour them, and return the goal named in the instruction."""

    @abc.abstractmethod
    def _possible_goals(self) -> list[dict[str, str]]:
        """Every goal an instruction of this task could name in the current scene."""

    @abc.abstractmethod
    def _goal_satisfied(self, goal: dict[str, str]) -> bool:
        """Whether the current sim state achieves `goal` (the success predicate)."""

    @abc.abstractmethod
    def _reward_terms(self) -> dict[str, float]:
        """Named reward terms (already weighted); the step reward is their sum."""

    @abc.abstractmethod
    def expert_action(self) -> np.ndarray:
        """The scripted expert's action for the current state, from privileged sim state."""

    def expert_label(self, slack: float = 1.0) -> np.ndarray:
        """`expert_action` with the expert's alignment tolerances multiplied by `slack`: a label
        for a learner less precise than the expert (`collect.guidance.expert_slack`). Near an object the
        expert re-aligns (lifts clear, centres, comes down again) whenever it is a few millimetres
        off; a policy that is centimetres off gets "re-align" on every state there, learns to
        hover, and with a larger slack is told to go ahead while it corrects."""
        if not slack > 0:
            raise ValueError(f"slack must be > 0, got {slack}")
        kept, self.expert_slack = self.expert_slack, float(slack)
        try:
            return self.expert_action()
        finally:
            self.expert_slack = kept

    # ---- gymnasium API ---------------------------------------------------------------------

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        rng = self.np_random
        mujoco.mj_resetData(self.model, self.data)
        tip = np.array([rng.uniform(-0.05, 0.05), rng.uniform(0.15, 0.18), rng.uniform(0.12, 0.15)])
        body = tip - self._tip_offset
        self.data.mocap_pos[self._mocap] = body
        self.data.qpos[self._gripper_qpos : self._gripper_qpos + 3] = body
        self._set_fingers(-1.0)
        for adr in self._finger_qpos:
            self.data.qpos[adr] = FINGER_OPEN
        self.goal = self._reset_task(rng)
        if type(self) not in self._scene_checked:
            contract.check_goal(self, self.goal)  # before the templates are filled in with it
        template = self.instruction_templates[rng.integers(len(self.instruction_templates))]
        self.instruction = template.format(**self.goal)
        forced = (options or {}).get("instruction")
        if forced is not None:
            self.goal, self.instruction = self._parse_instruction(forced)
        mujoco.mj_step(self.model, self.data, nstep=SUBSTEPS)
        if type(self) not in self._scene_checked:
            contract.check_scene(self)  # once per task class and process: cheap, early, clear
            self._scene_checked.add(type(self))
        self._contact_force = self._max_contact_force()
        return self._observation(), self._info()

    def step(self, action):
        info = self._simulate(self._validate_action(action))
        reward = float(sum(v for k, v in info.items() if k.startswith("reward/")))
        return self._observation(), reward, info["is_success"], False, info

    def _simulate(self, action: np.ndarray) -> dict[str, Any]:
        """Apply a validated action, run the physics for one control step, return the info."""
        tip = self.data.site_xpos[self._tip_site].copy()
        target = np.clip(tip + action[:3].astype(np.float64) * MAX_MOVE, TIP_LOW, TIP_HIGH)
        fingers = self.data.ctrl[self._finger_ctrl].copy()
        fingers_to = finger_slide(float(action[3]))
        self._contact_force = 0.0
        # Ramp the mocap target over the step so the gripper moves at a steady speed rather
        # than jumping (a jump would bat light objects away); the fingers' target ramps too
        # (`FINGER_RAMP_SUBSTEPS`).
        substep = 0
        for i in range(1, RAMP_CHUNKS + 1):
            waypoint = tip + (target - tip) * (i / RAMP_CHUNKS)
            self.data.mocap_pos[self._mocap] = waypoint - self._tip_offset
            for _ in range(SUBSTEPS // RAMP_CHUNKS):
                substep += 1
                share = min(1.0, substep / FINGER_RAMP_SUBSTEPS)
                self.data.ctrl[self._finger_ctrl] = fingers + (fingers_to - fingers) * share
                mujoco.mj_step(self.model, self.data)
            self._contact_force = max(self._contact_force, self._max_contact_force())
        return self._info()

    def render(self) -> np.ndarray | None:
        if self.render_mode != "rgb_array":
            return None
        return self._render_image().copy()

    def close(self) -> None:
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None

    # ---- instructions (hindsight relabelling) -----------------------------------------------

    def achieved_instructions(self) -> list[str]:
        """Canonical instructions of this task that the current state satisfies."""
        canonical = self.instruction_templates[0]
        return [canonical.format(**g) for g in self._possible_goals() if self._goal_satisfied(g)]

    @classmethod
    def parse_instruction(cls, instruction: str) -> tuple[int, dict[str, str]]:
        """The template (index into `instruction_templates`) an instruction is written in, and
        the goal it names (the templates' fields): "reach the red ball" -> (1, {"color": "red"}).
        ValueError when no template gives it."""
        for k, template in enumerate(cls.instruction_templates):
            match = _template_pattern(template).fullmatch(instruction)
            if match is not None:
                return k, match.groupdict()
        raise ValueError(
            f"{cls.__name__}: instruction {instruction!r} is in none of the task's templates "
            f"{cls.instruction_templates}"
        )

    def possible_instructions(self, template: int | None = 0) -> list[str]:
        """Instructions of every goal this task could name in the current scene (e.g. each ball's
        colour), in template form `template` (0, the canonical; None, the one this episode drew).
        `reset(seed=s, options={"instruction": i})` gives the same scene with goal i."""
        if template is not None and not 0 <= template < len(self.instruction_templates):
            raise ValueError(
                f"template {template!r} is out of range; expected None or 0.."
                f"{len(self.instruction_templates) - 1} (this task's instruction templates)"
            )
        if template is None:
            template = next(
                k
                for k, t in enumerate(self.instruction_templates)
                if t.format(**self.goal) == self.instruction
            )
        form = self.instruction_templates[template]
        return [form.format(**g) for g in self._possible_goals()]

    def _goal_named(self, instruction: str) -> tuple[dict[str, str] | None, str]:
        """The goal that `instruction` (any template form, any case and spacing) names in the
        current scene, or None; and the instruction in its normal form (lower case, single
        spaces)."""
        text = " ".join(instruction.lower().split())
        for goal in self._possible_goals():
            if any(text == t.format(**goal) for t in self.instruction_templates):
                return goal, text
        return None, text

    def _parse_instruction(self, instruction: Any) -> tuple[dict[str, str], str]:
        """`_goal_named` for a reset option: an instruction that names no goal is an error."""
        if isinstance(instruction, str):
            goal, text = self._goal_named(instruction)
            if goal is not None:
                return goal, text
        raise ValueError(
            f"reset option instruction={instruction!r} names no goal of this scene; expected one of "
            f"{self.possible_instructions()} (or another template form of one: "
            f"{list(self.instruction_templates)})"
        )

    def is_satisfied(self, instruction: str) -> bool:
        """Whether the current state satisfies `instruction` (any template form of this task)."""
        goal, _ = self._goal_named(instruction)
        return goal is not None and bool(self._goal_satisfied(goal))

    # ---- shared helpers for tasks -------------------------------------------------------------

    def tip_pos(self) -> np.ndarray:
        """Fingertip point (between the finger tips), world frame."""
        return self.data.site_xpos[self._tip_site].copy()

    def world_to_pixel(self, points: np.ndarray) -> np.ndarray:
        """float [N, 2]: the (column, row) in the observation image of world points [N, 3]
        under the `front` camera (pinhole: its pose after the last step, its vertical field of
        view); points behind the camera come out NaN. For drawing, e.g. a policy's waypoint on
        a video."""
        cam = mujoco.mj_name2id(self.model, mujoco.mjtObj.mjOBJ_CAMERA, "front")
        mujoco.mj_kinematics(self.model, self.data)
        mujoco.mj_camlight(self.model, self.data)
        axes = self.data.cam_xmat[cam].reshape(3, 3)  # columns: camera x, y, z in world
        rel = (np.asarray(points, dtype=np.float64).reshape(-1, 3) - self.data.cam_xpos[cam]) @ axes
        depth = -rel[:, 2]  # the camera looks along its -z
        focal = 0.5 * self.image_height / np.tan(np.radians(self.model.cam_fovy[cam]) / 2)
        with np.errstate(divide="ignore", invalid="ignore"):
            col = 0.5 * self.image_width + focal * rel[:, 0] / depth
            row = 0.5 * self.image_height - focal * rel[:, 1] / depth
        out = np.stack([col, row], axis=1)
        out[depth <= 0] = np.nan
        return out

    def finger_gap(self) -> float:
        return float(sum(self.data.qpos[a] for a in self._finger_qpos))

    def body_pos(self, name: str) -> np.ndarray:
        return self.data.body(name).xpos.copy()

    def body_speed(self, name: str) -> float:
        """Linear speed (m/s) of a free-joint body."""
        joint = self.model.body(name).jntadr[0]
        adr = self.model.jnt_dofadr[joint]
        return float(np.linalg.norm(self.data.qvel[adr : adr + 3]))

    def touching(self, geoms_a: frozenset[int], geoms_b: frozenset[int]) -> bool:
        """Whether any geom of `geoms_a` is in contact with any geom of `geoms_b`."""
        ncon = self.data.ncon
        if ncon == 0:
            return False
        in_a, in_b = self._geom_mask(geoms_a), self._geom_mask(geoms_b)
        g1, g2 = self.data.contact.geom1[:ncon], self.data.contact.geom2[:ncon]
        return bool(np.any((in_a[g1] & in_b[g2]) | (in_b[g1] & in_a[g2])))

    def _geom_mask(self, geoms: frozenset[int]) -> np.ndarray:
        mask = self._geom_masks.get(geoms)
        if mask is None:
            mask = np.zeros(self.model.ngeom, bool)
            mask[list(geoms)] = True
            self._geom_masks[geoms] = mask
        return mask

    def body_geoms(self, name: str) -> frozenset[int]:
        body = self.model.body(name).id
        return frozenset(np.flatnonzero(self.model.geom_bodyid == body).tolist())

    def set_color(self, geom: str, color: str) -> None:
        """Colour the geom named `geom` (a geom name, not a body name) with `COLORS[color]`."""
        if color not in COLORS:
            raise ValueError(
                f"set_color({geom!r}, {color!r}): unknown colour {color!r}; expected one of "
                f"{', '.join(COLORS)} (envs.tabletop.COLORS)"
            )
        self.model.geom_rgba[self.model.geom(geom).id] = COLORS[color]

    def place_object(self, body: str, pos: np.ndarray) -> None:
        """Put a free-joint body at `pos` (upright, at rest)."""
        joint = self.model.body(body).jntadr[0]
        adr = self.model.jnt_qposadr[joint]
        self.data.qpos[adr : adr + 7] = [*pos, 1.0, 0.0, 0.0, 0.0]
        self.data.qvel[self.model.jnt_dofadr[joint] : self.model.jnt_dofadr[joint] + 6] = 0.0

    def place_fixture(self, body: str, pos: np.ndarray) -> None:
        """Move a fixed (joint-less) body, e.g. a bin or a goal marker, for this episode."""
        self.model.body_pos[self.model.body(body).id] = pos

    @staticmethod
    def sample_xy(
        rng: np.random.Generator, n: int, low, high, min_dist: float, avoid=()
    ) -> np.ndarray:
        """`n` points uniform in the box [low, high], pairwise and from `avoid` >= `min_dist` apart."""
        for _ in range(1000):
            points = rng.uniform(low, high, size=(n, 2))
            others = np.concatenate([points, np.reshape(avoid, (-1, 2))])
            dist = np.linalg.norm(others[:, None] - others[None], axis=-1)
            np.fill_diagonal(dist, np.inf)
            if dist[:n].min() >= min_dist:
                return points
        raise RuntimeError(f"could not place {n} objects {min_dist} m apart in {low}..{high}")

    def move_to(self, target: np.ndarray, gripper: float, gain: float = 1.0) -> np.ndarray:
        """Saturated proportional action towards a fingertip target, with a finger command."""
        delta = gain * (np.asarray(target) - self.tip_pos()) / MAX_MOVE
        return np.append(np.clip(delta, -1.0, 1.0), gripper).astype(np.float32)

    # ---- internals --------------------------------------------------------------------------

    def _validate_action(self, action) -> np.ndarray:
        a = np.asarray(action, dtype=np.float32)
        if a.shape != (ACTION_DIM,):
            raise ValueError(
                f"action has shape {a.shape}; expected ({ACTION_DIM},) = (dx, dy, dz, gripper)"
            )
        if not np.all(np.isfinite(a)):
            raise ValueError(
                f"action {a.tolist()} has non-finite values; expected finite in [-1, 1]"
            )
        return np.clip(a, -1.0, 1.0)

    def _set_fingers(self, command: float) -> None:
        self.data.ctrl[self._finger_ctrl] = finger_slide(command)

    def _render_image(self) -> np.ndarray:
        if self._renderer is None:
            self._renderer = rendering.CameraRenderer(
                self.model, self.image_height, self.image_width, "front"
            )
        if self._image is None:
            self._image = self._renderer.render(self.data)
        return self._image

    def _observation(self) -> dict[str, Any]:
        self._image = None
        state = np.append(self.tip_pos(), self.finger_gap()).astype(np.float32)
        return {"image": self._render_image(), "state": state, "instruction": self.instruction}

    def _info(self) -> dict[str, Any]:
        info: dict[str, Any] = {"is_success": bool(self._goal_satisfied(self.goal))}
        info.update({f"reward/{k}": float(v) for k, v in self._reward_terms().items()})
        info["contact_force"] = self._contact_force
        info["objects_off_table"] = self._objects_off_table()
        return info

    def _max_contact_force(self) -> float:
        """Largest contact normal force (N) now; with elliptic cones it is the first efc row."""
        ncon = self.data.ncon
        if ncon == 0:
            return 0.0
        if self.model.opt.cone == mujoco.mjtCone.mjCONE_ELLIPTIC:
            rows = self.data.contact.efc_address[:ncon]
            return float(np.abs(self.data.efc_force[rows[rows >= 0]]).max(initial=0.0))
        force = np.zeros(6)
        best = 0.0
        for i in range(ncon):
            mujoco.mj_contactForce(self.model, self.data, i, force)
            best = max(best, abs(force[0]))
        return best

    def _objects_off_table(self) -> int:
        if not self._object_xyz.size:
            return 0
        xyz = self.data.qpos[self._object_xyz]
        off = (xyz[:, 2] < -0.05) | np.any((xyz[:, :2] < self._table_low), axis=1)
        return int(np.count_nonzero(off | np.any(xyz[:, :2] > self._table_high, axis=1)))


def _template_pattern(template: str) -> re.Pattern:
    """A regular expression matching the instructions `template` formats (each field as a
    named group; a field used twice must repeat its value)."""
    parts, seen = [], set()
    for literal, field, _, _ in string.Formatter().parse(template):
        parts.append(re.escape(literal))
        if field is not None:
            parts.append(f"(?P={field})" if field in seen else f"(?P<{field}>.+?)")
            seen.add(field)
    return re.compile("".join(parts))
