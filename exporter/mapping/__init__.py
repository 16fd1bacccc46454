"""Map stage: events and alerts -> ECS or OCSF documents, driven by mappings/*.yaml."""

from exporter.mapping.engine import Document, Item, Mapping, MappingError
from exporter.mapping.mapper import Mapper, load_mapping, schema_names

__all__ = ["Document", "Item", "Mapper", "Mapping", "MappingError", "load_mapping", "schema_names"]
