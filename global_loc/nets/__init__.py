"""Network building blocks shared by several models: VGG16, MobileNetV2 (TF-slim layout),
NetVLAD layers. Imported only by the learned models (they need PyTorch)."""
