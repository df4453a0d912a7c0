"""Start the localizer lifecycle node, configure it and activate it.

    ros2 launch global_loc localize.launch.py map:=/path/to/map.glmap camera:=/camera

Arguments:
    map: the map file (global-loc index ...).
    params_file: node parameters (default: the package's config/localizer.yaml).
    camera: namespace of the camera topics: <camera>/image_raw and <camera>/camera_info.
    use_sim_time: use /clock (e.g. when playing a bag).
    autostart: configure and activate the node at start (else drive it with `ros2 lifecycle`).
    fastdds_profile: a Fast DDS XML profile for the processes this launch starts ('default': the
        package's config/fastdds_large_data.xml, for best-effort large images; empty: none).

The node's image QoS is the parameter image_qos (params_file): 'reliable' by default,
'sensor_data' for a camera that publishes best effort.
"""
import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, EmitEvent, RegisterEventHandler, SetEnvironmentVariable
from launch.conditions import IfCondition
from launch.events import matches_action
from launch.substitutions import LaunchConfiguration, PythonExpression
from launch_ros.actions import LifecycleNode
from launch_ros.event_handlers import OnStateTransition
from launch_ros.events.lifecycle import ChangeState
from lifecycle_msgs.msg import Transition


def generate_launch_description():
    share = get_package_share_directory("global_loc")
    map_path = LaunchConfiguration("map")
    params_file = LaunchConfiguration("params_file")
    camera = LaunchConfiguration("camera")
    use_sim_time = LaunchConfiguration("use_sim_time")
    autostart = LaunchConfiguration("autostart")
    profile = LaunchConfiguration("fastdds_profile")
    profile_path = PythonExpression([
        "'", os.path.join(share, "config", "fastdds_large_data.xml"), "' if '", profile, "' == 'default' else '",
        profile, "'"])
    use_profile = IfCondition(PythonExpression(["'", profile, "' != ''"]))

    node = LifecycleNode(
        package="global_loc",
        executable="localizer_node",
        name="localizer",
        namespace="",
        output="screen",
        parameters=[params_file, {"map_path": map_path, "use_sim_time": use_sim_time}],
        remappings=[
            ("image", [camera, "/image_raw"]),
            ("image/compressed", [camera, "/image_raw/compressed"]),
            ("camera_info", [camera, "/camera_info"]),
        ],
    )
    configure = EmitEvent(
        event=ChangeState(lifecycle_node_matcher=matches_action(node),
                          transition_id=Transition.TRANSITION_CONFIGURE),
        condition=IfCondition(autostart),
    )
    activate = RegisterEventHandler(
        OnStateTransition(
            target_lifecycle_node=node,
            goal_state="inactive",
            entities=[EmitEvent(event=ChangeState(lifecycle_node_matcher=matches_action(node),
                                                  transition_id=Transition.TRANSITION_ACTIVATE))],
        ),
        condition=IfCondition(autostart),
    )
    return LaunchDescription([
        DeclareLaunchArgument("map", description="map file to localize against"),
        DeclareLaunchArgument("params_file", default_value=os.path.join(share, "config", "localizer.yaml"),
                              description="parameters of the localizer node"),
        DeclareLaunchArgument("camera", default_value="/camera",
                              description="namespace of <camera>/image_raw and <camera>/camera_info"),
        DeclareLaunchArgument("use_sim_time", default_value="false", description="use /clock"),
        DeclareLaunchArgument("autostart", default_value="true",
                              description="configure and activate the lifecycle node at start"),
        DeclareLaunchArgument("fastdds_profile", default_value="",
                              description="Fast DDS XML profile ('default': config/fastdds_large_data.xml)"),
        # Fast DDS 3 reads the first name, Fast DDS 2 (Humble, Jazzy) the second
        SetEnvironmentVariable("FASTDDS_DEFAULT_PROFILES_FILE", profile_path, condition=use_profile),
        SetEnvironmentVariable("FASTRTPS_DEFAULT_PROFILES_FILE", profile_path, condition=use_profile),
        node,
        activate,
        configure,
    ])
