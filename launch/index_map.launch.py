"""Start the map indexer node: it builds a map from the camera and tf while the robot drives.

    ros2 launch global_loc index_map.launch.py map:=/path/to/new_map.glmap camera:=/camera
    ros2 service call /map_indexer/save_map std_srvs/srv/Trigger   # write the map now

Arguments:
    map: the map file to write (on ~/save_map, every autosave_every keyframes, and at shutdown).
    params_file: node parameters (default: the package's config/map_indexer.yaml).
    camera: namespace of the camera topics: <camera>/image_raw and <camera>/camera_info.
    use_sim_time: use /clock (e.g. when playing a bag).
    shutdown_timeout: seconds the node may take to write the map after Ctrl-C before launch
        escalates to SIGTERM (which the node also answers by finishing its save), then SIGKILL
        10 s later. A large map takes a while to build.
    fastdds_profile: a Fast DDS XML profile for the processes this launch starts ('default': the
        package's config/fastdds_large_data.xml, for best-effort large images; empty: none).
"""
import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, SetEnvironmentVariable
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration, PythonExpression
from launch_ros.actions import Node


def generate_launch_description():
    share = get_package_share_directory("global_loc")
    camera = LaunchConfiguration("camera")
    profile = LaunchConfiguration("fastdds_profile")
    profile_path = PythonExpression([
        "'", os.path.join(share, "config", "fastdds_large_data.xml"), "' if '", profile, "' == 'default' else '",
        profile, "'"])
    use_profile = IfCondition(PythonExpression(["'", profile, "' != ''"]))
    node = Node(
        package="global_loc",
        executable="map_indexer_node",
        name="map_indexer",
        output="screen",
        sigterm_timeout=LaunchConfiguration("shutdown_timeout"),
        sigkill_timeout="10",
        parameters=[LaunchConfiguration("params_file"),
                    {"map_path": LaunchConfiguration("map"), "use_sim_time": LaunchConfiguration("use_sim_time")}],
        remappings=[
            ("image", [camera, "/image_raw"]),
            ("image/compressed", [camera, "/image_raw/compressed"]),
            ("camera_info", [camera, "/camera_info"]),
        ],
    )
    return LaunchDescription([
        DeclareLaunchArgument("map", description="map file to write"),
        DeclareLaunchArgument("params_file", default_value=os.path.join(share, "config", "map_indexer.yaml"),
                              description="parameters of the map indexer node"),
        DeclareLaunchArgument("camera", default_value="/camera",
                              description="namespace of <camera>/image_raw and <camera>/camera_info"),
        DeclareLaunchArgument("use_sim_time", default_value="false", description="use /clock"),
        DeclareLaunchArgument("shutdown_timeout", default_value="300",
                              description="seconds to write the map at shutdown before SIGTERM"),
        DeclareLaunchArgument("fastdds_profile", default_value="",
                              description="Fast DDS XML profile ('default': config/fastdds_large_data.xml)"),
        SetEnvironmentVariable("FASTDDS_DEFAULT_PROFILES_FILE", profile_path, condition=use_profile),
        SetEnvironmentVariable("FASTRTPS_DEFAULT_PROFILES_FILE", profile_path, condition=use_profile),
        node,
    ])
