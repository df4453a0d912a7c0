"""The package files agree with each other, and the core never imports ROS."""
import ast
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_package_xml_is_format_3_ament_python():
    root = ET.parse(ROOT / "package.xml").getroot()
    assert root.get("format") == "3"
    assert root.findtext("name") == "global_loc"
    deps = {e.text for e in root.findall("exec_depend")}
    for d in ("rclpy", "tf2_ros_py", "sensor_msgs", "geometry_msgs", "python3-numpy",
              "python3-opencv", "python3-protobuf"):
        assert d in deps, d
    assert root.find("export/build_type").text == "ament_python"
    assert (ROOT / "resource" / "global_loc").exists()


def test_setup_declares_version_of_package_xml_and_scripts_dir():
    tree = ast.parse((ROOT / "setup.py").read_text())
    kwargs = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "setup":
            kwargs = {k.arg: k.value for k in node.keywords}
    version = ast.literal_eval(kwargs["version"])
    assert version == ET.parse(ROOT / "package.xml").getroot().findtext("version")
    import global_loc

    assert global_loc.__version__ == version
    cfg = (ROOT / "setup.cfg").read_text()
    assert "script_dir=$base/lib/global_loc" in cfg and "install_scripts=$base/lib/global_loc" in cfg


def test_core_imports_without_rclpy():
    """Import every core module in a fresh interpreter where rclpy cannot be imported."""
    code = (
        "import sys, importlib, pkgutil\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('rclpy', 'sensor_msgs', 'geometry_msgs', 'tf2_ros', 'launch',\n"
        "                                  'launch_ros', 'message_filters', 'diagnostic_msgs'):\n"
        "            raise ImportError('blocked ' + name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "import global_loc\n"
        "from global_loc.ros import RCLPY_MODULES\n"
        "for m in pkgutil.walk_packages(global_loc.__path__, 'global_loc.'):\n"
        "    if m.name.rsplit('.', 1)[-1] not in RCLPY_MODULES:\n"
        "        importlib.import_module(m.name)\n"
        "assert 'rclpy' not in sys.modules\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_generated_protobuf_code_is_reproducible(tmp_path):
    grpc_tools = pytest.importorskip("grpc_tools", reason="grpcio-tools is a test extra")
    from grpc_tools import protoc

    src = ROOT / "global_loc" / "map"
    rc = protoc.main([
        "protoc", f"-I{src}", f"--python_out={tmp_path}", f"--pyi_out={tmp_path}",
        str(src / "global_loc_map.proto"),
    ])
    assert rc == 0
    for name in ("global_loc_map_pb2.py", "global_loc_map_pb2.pyi"):
        assert (tmp_path / name).read_text() == (src / name).read_text(), (
            f"{name} is stale: run `make proto`"
        )
    assert grpc_tools


def test_replay_without_ros_says_what_to_install(tmp_path):
    """`global-loc replay` on a machine without rclpy: one line that says what is missing."""
    code = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('rclpy', 'rosgraph_msgs'):\n"
        "            raise ImportError('blocked ' + name, name=name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "from global_loc.cli.main import main\n"
        f"sys.exit(main(['replay', '--bag', {str(tmp_path)!r}]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 2, out.stderr
    assert "error: global-loc replay needs ROS 2's Python packages (rclpy is missing)" in out.stderr
    assert "Traceback" not in out.stderr
