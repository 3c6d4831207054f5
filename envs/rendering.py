"""Headless OpenGL backend selection and a fast offscreen camera renderer for the tasks.

Import this module before `mujoco` anywhere in `envs/`: when `MUJOCO_GL` is unset it probes EGL,
then OSMesa, in a short subprocess (a failed backend cannot be swapped out in-process because
PyOpenGL fixes its platform on first import) and sets `MUJOCO_GL` / `PYOPENGL_PLATFORM` so that
child processes (vector-env workers) inherit the choice without probing again. It also sets
`LP_NUM_THREADS=0` (unless set) so Mesa's llvmpipe rasterizes in the calling thread: its worker
threads do not survive `fork`, and a forked vector-env worker would otherwise hang on its first
frame (a 64x64 frame gains nothing from rasterizer threads anyway).
"""

from __future__ import annotations

import os
import subprocess
import sys

BACKENDS = ("egl", "osmesa")
DEBIAN_PACKAGES = {"egl": "libegl1 libegl-mesa0 libgl1-mesa-dri", "osmesa": "libosmesa6"}

_PROBE = """
import os, sys
os.environ["MUJOCO_GL"] = sys.argv[1]
os.environ["PYOPENGL_PLATFORM"] = sys.argv[1]
import mujoco
m = mujoco.MjModel.from_xml_string("<mujoco><worldbody><geom size='.1'/></worldbody></mujoco>")
r = mujoco.Renderer(m, 8, 8)
r.update_scene(mujoco.MjData(m))
r.render()
"""


def probe_backend(backend: str, timeout: float = 60.0) -> tuple[bool, str]:
    """Try to render one frame with `backend` in a subprocess; return (works, error text)."""
    env = {k: v for k, v in os.environ.items() if k not in ("MUJOCO_GL", "PYOPENGL_PLATFORM")}
    try:
        proc = subprocess.run(
            [sys.executable, "-c", _PROBE, backend],
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        return False, f"timed out after {timeout:.0f}s"
    lines = proc.stderr.strip().splitlines()
    return proc.returncode == 0, (lines[-1] if lines else f"exit code {proc.returncode}")


def select_gl_backend() -> str:
    """Return the MuJoCo GL backend in use, choosing egl then osmesa when `MUJOCO_GL` is unset.

    Raises RuntimeError naming the Debian packages to install when neither backend works.
    """
    chosen = os.environ.get("MUJOCO_GL", "").strip().lower()
    if chosen:
        return chosen
    errors = []
    for backend in BACKENDS:
        works, error = probe_backend(backend)
        if works:
            os.environ["MUJOCO_GL"] = backend
            os.environ["PYOPENGL_PLATFORM"] = backend
            return backend
        errors.append(f"{backend}: {error}")
    raise RuntimeError(
        "no headless OpenGL backend works for MuJoCo rendering ("
        + "; ".join(errors)
        + "). Install EGL (Debian: apt-get install "
        + DEBIAN_PACKAGES["egl"]
        + ") or OSMesa (Debian: apt-get install "
        + DEBIAN_PACKAGES["osmesa"]
        + "), or set MUJOCO_GL to a backend that works."
    )


def _adopt_backend(backend: str) -> None:
    """Point mujoco's Renderer at `backend` when mujoco was imported before the choice was made."""
    try:
        from mujoco.rendering.classic import gl_context
    except ImportError:  # mujoco < 3.3 keeps it at the top level
        from mujoco import gl_context
    if getattr(gl_context, "_MUJOCO_GL", backend) == backend:
        return
    if backend == "egl":
        from mujoco.egl import GLContext
    elif backend == "osmesa":
        from mujoco.osmesa import GLContext
    else:
        return
    gl_context.GLContext = GLContext


GL_BACKEND = select_gl_backend()
os.environ.setdefault("LP_NUM_THREADS", "0")

import mujoco  # noqa: E402  (must follow the backend choice)
import numpy as np  # noqa: E402

_adopt_backend(GL_BACKEND)


class CameraRenderer:
    """Renders one fixed camera to uint8 RGB, with shadows, reflections and multisampling off."""

    def __init__(self, model: mujoco.MjModel, height: int, width: int, camera: str) -> None:
        if mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_CAMERA, camera) < 0:
            raise ValueError(f"unknown camera {camera!r} in the task's MJCF")
        self._renderer = mujoco.Renderer(model, height=height, width=width)
        flags = self._renderer.scene.flags
        for flag in (
            mujoco.mjtRndFlag.mjRND_SHADOW,
            mujoco.mjtRndFlag.mjRND_REFLECTION,
            mujoco.mjtRndFlag.mjRND_SKYBOX,
        ):
            flags[flag] = 0
        self._camera = camera

    def render(self, data: mujoco.MjData) -> np.ndarray:
        """Return the current camera image as a fresh uint8 [H, W, 3] array."""
        self._renderer.update_scene(data, camera=self._camera)
        return self._renderer.render()

    def close(self) -> None:
        self._renderer.close()
