"""Start the localizer lifecycle node; it configures and activates itself (autostart).

    ros2 launch global_loc localize.launch.py map:=/path/to/map.glmap camera:=/camera

Arguments:
    map: the map file (global-loc index ...).
    params_file: node parameters (default: the package's config/localizer.yaml).
    camera: namespace of the camera topics: <camera>/image_raw and <camera>/camera_info; a camera
        rig: several namespaces, comma-separated (camera:=/front,/back): one pose of base_link per
        rig frame from all of them (the node's parameter cameras; rig_sync_slop in params_file).
    use_sim_time: use /clock (e.g. when playing a bag).
    autostart: configure and activate the node at start (else drive it with
        `ros2 lifecycle set /localizer configure`, then `activate`).
    fastdds_profile: a Fast DDS XML profile for the processes this launch starts ('default': the
        package's config/fastdds_large_data.xml, for best-effort large images; empty: none).

The node's image QoS is the parameter image_qos (params_file): 'reliable' by default,
'sensor_data' for a camera that publishes best effort.

The node takes its lifecycle transitions itself rather than through launch_ros's LifecycleNode
events: with those, `ros2 launch` itself aborted ("terminate called without an active
exception", exit -6) in about 1 of 12 double Ctrl-C, in launch_ros's rclpy teardown.
"""
import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction, SetEnvironmentVariable
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration, PythonExpression
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue


def generate_launch_description():
    share = get_package_share_directory("global_loc")
    camera = LaunchConfiguration("camera")
    profile = LaunchConfiguration("fastdds_profile")
    profile_path = PythonExpression([
        "'", os.path.join(share, "config", "fastdds_large_data.xml"), "' if '", profile, "' == 'default' else '",
        profile, "'"])
    use_profile = IfCondition(PythonExpression(["'", profile, "' != ''"]))

    def localizer(context):
        """The node: one camera's topics remapped, or a rig's namespaces as its parameter."""
        names = [n.strip() for n in camera.perform(context).split(",") if n.strip()]
        params = {
            "map_path": LaunchConfiguration("map"),
            "use_sim_time": ParameterValue(LaunchConfiguration("use_sim_time"), value_type=bool),
            "autostart": ParameterValue(LaunchConfiguration("autostart"), value_type=bool),
        }
        remappings = []
        if len(names) > 1:
            params["cameras"] = names
        else:
            ns = names[0] if names else "/camera"
            remappings = [("image", ns + "/image_raw"), ("image/compressed", ns + "/image_raw/compressed"),
                          ("camera_info", ns + "/camera_info")]
        return [Node(package="global_loc", executable="localizer_node", name="localizer", output="screen",
                     parameters=[LaunchConfiguration("params_file"), params], remappings=remappings)]

    return LaunchDescription([
        DeclareLaunchArgument("map", description="map file to localize against"),
        DeclareLaunchArgument("params_file", default_value=os.path.join(share, "config", "localizer.yaml"),
                              description="parameters of the localizer node"),
        DeclareLaunchArgument("camera", default_value="/camera",
                              description="namespace of <camera>/image_raw and <camera>/camera_info; "
                                          "several, comma-separated, for a camera rig"),
        DeclareLaunchArgument("use_sim_time", default_value="false", description="use /clock"),
        DeclareLaunchArgument("autostart", default_value="true",
                              description="configure and activate the lifecycle node at start"),
        DeclareLaunchArgument("fastdds_profile", default_value="",
                              description="Fast DDS XML profile ('default': config/fastdds_large_data.xml)"),
        # Fast DDS 3 reads the first name, Fast DDS 2 (Humble, Jazzy) the second
        SetEnvironmentVariable("FASTDDS_DEFAULT_PROFILES_FILE", profile_path, condition=use_profile),
        SetEnvironmentVariable("FASTRTPS_DEFAULT_PROFILES_FILE", profile_path, condition=use_profile),
        OpaqueFunction(function=localizer),
    ])
