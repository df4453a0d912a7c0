"""ROS 2 glue: the localizer and map indexer nodes, and message conversions.

Only this subpackage imports ROS, and only its node modules (``localizer_node``,
``map_indexer_node``) import rclpy, so everything else here (conversions, the frame handler,
parameters) is importable and testable on a machine without ROS 2.
"""
