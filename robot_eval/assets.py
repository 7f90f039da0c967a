"""Robot and furniture models generated at run time from pybullet_data (nothing is downloaded).

* The Panda's stock visual meshes make TinyRenderer ~13x slower; we write a copy of `panda.urdf` whose visuals
  are the low-poly collision meshes (same geometry the physics sees).
* The drawer cabinet is generated as URDF text (boxes only) so its dimensions live next to the code that
  scores the task.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

from robot_eval._bullet import data_path


def _cache_dir() -> Path:
    d = Path(tempfile.gettempdir()) / f"offrl_robot_eval_{os.getuid() if hasattr(os, 'getuid') else 0}"
    d.mkdir(parents=True, exist_ok=True)
    return d


def _write_atomic(path: Path, text: str) -> Path:
    if path.exists() and path.read_text() == text:
        return path
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.replace(tmp, path)
    return path


def lowpoly_panda_urdf() -> str:
    """Path of a Panda URDF whose visual meshes are the collision meshes (absolute paths)."""
    src_dir = Path(data_path()) / "franka_panda"
    text = (src_dir / "panda.urdf").read_text()
    text = text.replace("package://meshes/visual/", "package://meshes/collision/")
    text = re.sub(r"package://meshes/", str(src_dir / "meshes") + "/", text)
    digest = hashlib.sha1(text.encode()).hexdigest()[:10]
    return str(_write_atomic(_cache_dir() / f"panda_lowpoly_{digest}.urdf", text))


@dataclass(frozen=True)
class CabinetGeometry:
    """Dimensions (metres) of the generated cabinet; the drawer slides towards the robot (-x)."""

    front_x: float = 0.56  # x of the cabinet's open front face
    depth: float = 0.24
    width: float = 0.24
    height: float = 0.11
    wall: float = 0.01
    drawer_depth: float = 0.20
    drawer_width: float = 0.20
    drawer_height: float = 0.05  # low walls: the Panda hand (21 cm wide) must stay above them
    drawer_floor_z: float = 0.03
    travel: float = 0.18  # prismatic joint range
    handle_len: float = 0.08  # T-handle: a stem sticking out towards the robot, ending in a cross bar
    handle_bar: float = 0.10  # cross-bar width (y): closed fingers on the stem catch on it when pulling
    handle_width: float = 0.02
    handle_height: float = 0.025

    @property
    def drawer_top_z(self) -> float:
        return self.drawer_floor_z + self.drawer_height


def _box(x: float, y: float, z: float, sx: float, sy: float, sz: float, rgba: str) -> str:
    geom = f'<geometry><box size="{sx:.4f} {sy:.4f} {sz:.4f}"/></geometry>'
    origin = f'<origin xyz="{x:.4f} {y:.4f} {z:.4f}" rpy="0 0 0"/>'
    return (
        f'<visual>{origin}{geom}<material name="m{rgba.replace(" ", "_")}"><color rgba="{rgba}"/></material></visual>'
        f"<collision>{origin}{geom}</collision>"
    )


def cabinet_urdf(g: CabinetGeometry = CabinetGeometry()) -> str:
    """URDF path of a cabinet (fixed base, frame at the front-bottom-centre) with one sliding drawer."""
    w, d, h, t = g.wall, g.depth, g.height, g.wall
    wood = "0.55 0.38 0.22 1"
    # cabinet shell: top, bottom, back, two sides; open at the front (x = 0 in the cabinet frame)
    shell = "".join(
        [
            _box(d / 2, 0, h - t / 2, d, g.width, t, wood),
            _box(d / 2, 0, t / 2, d, g.width, t, wood),
            _box(d - t / 2, 0, h / 2, t, g.width, h, wood),
            _box(d / 2, g.width / 2 - t / 2, h / 2, d, t, h, wood),
            _box(d / 2, -g.width / 2 + t / 2, h / 2, d, t, h, wood),
        ]
    )
    dd, dw, dh = g.drawer_depth, g.drawer_width, g.drawer_height
    grey = "0.8 0.8 0.82 1"
    red = "0.85 0.15 0.1 1"
    # drawer frame: origin at the centre of its front wall's bottom edge; open top
    drawer = "".join(
        [
            _box(dd / 2, 0, w / 2, dd, dw, w, grey),  # floor
            _box(w / 2, 0, dh / 2, w, dw, dh, grey),  # front wall
            _box(dd - w / 2, 0, dh / 2, w, dw, dh, grey),  # back wall
            _box(dd / 2, dw / 2 - w / 2, dh / 2, dd, w, dh, grey),
            _box(dd / 2, -dw / 2 + w / 2, dh / 2, dd, w, dh, grey),
            _box(
                -g.handle_len / 2,
                0,
                dh - g.handle_height / 2 - 0.005,
                g.handle_len,
                g.handle_width,
                g.handle_height,
                red,
            ),
            _box(
                -g.handle_len - 0.005,
                0,
                dh - g.handle_height / 2 - 0.005,
                0.01,
                g.handle_bar,
                g.handle_height,
                red,
            ),
        ]
    )
    text = f"""<?xml version="1.0"?>
<robot name="offrl_cabinet">
  <link name="cabinet">
    <inertial><origin xyz="0 0 0"/><mass value="0"/><inertia ixx="0" ixy="0" ixz="0" iyy="0" iyz="0" izz="0"/></inertial>
    {shell}
  </link>
  <link name="drawer">
    <inertial><origin xyz="{dd / 2:.4f} 0 0.02"/><mass value="0.5"/>
      <inertia ixx="0.002" ixy="0" ixz="0" iyy="0.002" iyz="0" izz="0.002"/></inertial>
    {drawer}
  </link>
  <joint name="drawer_slide" type="prismatic">
    <parent link="cabinet"/><child link="drawer"/>
    <origin xyz="{t:.4f} 0 {g.drawer_floor_z - t / 2 + 0.001:.4f}" rpy="0 0 0"/>
    <axis xyz="-1 0 0"/>
    <limit lower="0" upper="{g.travel:.4f}" effort="100" velocity="1"/>
  </joint>
</robot>
"""
    digest = hashlib.sha1(text.encode()).hexdigest()[:10]
    return str(_write_atomic(_cache_dir() / f"cabinet_{digest}.urdf", text))
