"""The agent's configuration: schema and loader."""

from exporter.config.loader import ConfigError, config_to_yaml, load_config
from exporter.config.schema import Config

__all__ = ["Config", "ConfigError", "config_to_yaml", "load_config"]
