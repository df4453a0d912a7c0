"""Start the map indexer node: it builds a map from the camera and tf while the robot drives.

    ros2 launch global_loc index_map.launch.py map:=/path/to/new_map.glmap camera:=/camera
    ros2 service call /map_indexer/save_map std_srvs/srv/Trigger   # write the map now

Arguments:
    map: the map file to write (on ~/save_map, every autosave_every keyframes, and at shutdown).
    params_file: node parameters (default: the package's config/map_indexer.yaml).
    camera: namespace of the camera topics: <camera>/image_raw and <camera>/camera_info.
    use_sim_time: use /clock (e.g. when playing a bag).
"""
import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node


def generate_launch_description():
    share = get_package_share_directory("global_loc")
    camera = LaunchConfiguration("camera")
    node = Node(
        package="global_loc",
        executable="map_indexer_node",
        name="map_indexer",
        output="screen",
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
        node,
    ])
