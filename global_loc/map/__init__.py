"""The map: its protobuf schema, storage, and the MapBuilder."""
