"""Reading what users already have: image folders, pose and camera files, COLMAP models, bags."""
