"""Scripts over the platform: base images, the demo, the real-model study."""
