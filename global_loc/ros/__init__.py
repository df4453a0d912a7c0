"""ROS 2 glue: the localizer and map indexer nodes, message conversions, bag replay, and the
tools that run the nodes on a live graph (colcon workspace, launch, recorder).

Only this subpackage imports ROS, and only the modules in :data:`RCLPY_MODULES` import rclpy,
so everything else here (conversions, the frame handler, diagnostics, parameters, the colcon
workspace helpers) is importable and testable on a machine without ROS 2.
"""

#: the modules of this subpackage that import rclpy (and ROS message packages)
RCLPY_MODULES = ("localizer_node", "map_indexer_node", "node_utils", "replay", "live")
