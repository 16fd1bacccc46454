"""Where each rule field lives in the documents provex emits (ECS and OCSF).

Rules name the taxonomy of exporter/taxonomy/FIELDS.md; a SIEM only sees the
mapped documents (mappings/ecs.yaml, mappings/ocsf.yaml). Each taxonomy field
has a *home* in a schema, or a reason why it has none: a rule that uses a field
without a home is not exported (a test checks that every home is a field the
mapping really writes, and that every taxonomy field is listed).
"""

from __future__ import annotations

from dataclasses import dataclass

Scalar = str | int | bool


EXISTS = "<exists>"


@dataclass(frozen=True)
class Home:
    """A document field for a taxonomy field.

    `values`: the rule value (as text: "true", "2", "exec") -> the document
    values it stands for; a value not listed has no home. None: same value.
    `text`: the document keeps the number as a string (ECS user.id).
    A document value EXISTS stands for "the field is present" (Sigma's |exists).
    """

    field: str
    values: dict[str, list[Scalar]] | None = None
    text: bool = False


# A str instead of a Home: why the field has no home in that schema.
Entry = Home | str

# Per logsource category where the home differs ("*": every other category).
PerCategory = dict[str, Entry]

# Flags written only where they hold (a path in a host mount, a file the kernel judged
# sensitive, a secret by identity): "false" would also have to match every document
# where the fact does not apply.
_READ_ONLY = {"true": [True]}
_EVENT_TYPE_ACTIONS: dict[str, list[Scalar]] = {
    "exec": ["execve", "execveat"],
    "open": ["open", "openat", "openat2", "creat", "open_by_handle_at", "memfd_create", "io_uring_open"],
    "connect": ["connect"],
    "accept": ["accept", "accept4"],
    "mount": ["mount", "fsopen", "fsconfig", "fsmount", "move_mount", "open_tree"],
    "setns": ["setns"],
    "unshare": ["unshare"],
}

ECS: dict[str, Entry | PerCategory] = {
    "Image": Home("process.executable"),
    "CommandLine": Home("process.command_line"),
    "ParentImage": Home("process.parent.executable"),
    "ParentCommandLine": Home("process.parent.command_line"),
    "User": "ECS carries the numeric uid (user.id), not the user name",
    "ProcessId": Home("process.pid"),
    "ParentProcessId": Home("process.parent.pid"),
    "TargetFilename": Home("file.path"),
    "DestinationIp": Home("destination.ip"),
    "DestinationPort": Home("destination.port"),
    "SourceIp": Home("source.ip"),
    "SourcePort": Home("source.port"),
    "Initiated": Home("network.direction", {"true": ["egress"], "false": ["ingress"]}),
    # What the provenance graph resolved: ECS custom fields (mappings/fields/provex.yml).
    "TargetFilenameAsGiven": Home("provex.path_as_given"),
    "ImageAsGiven": Home("provex.path_as_given"),
    "PathResolution": Home("provex.path_resolution"),
    "InterpretedFile": Home("provex.interpreted_file"),
    "ExecutedFiles": Home("provex.executed_files"),
    "ExecutedFileFromNetwork": Home("provex.executable_from_network"),
    "EventType": Home("event.action", _EVENT_TYPE_ACTIONS),
    "Syscall": Home("event.action"),
    "Comm": {
        "process_creation": "an exec's process.name names the new image; the comm at the syscall is the caller's",
        "*": Home("process.name"),
    },
    "ThreadId": Home("process.thread.id"),
    "UserId": Home("user.id", text=True),
    "GroupId": Home("group.id", text=True),
    "ReturnCode": "ECS keeps the errno name (error.code), not the return value",
    "Success": Home("event.outcome", {"true": ["success", "unknown"], "false": ["failure"]}),
    "AncestorImages": "the process's ancestors are not written into ECS documents",
    "OpenFlags": "ECS documents do not carry the raw open flags",
    "OpenWrite": "ECS event.type says change or creation, and O_CREAT without write is creation too",
    "OpenCreate": Home("event.type", {"true": ["creation"]}),
    "OpenTruncate": "ECS documents do not carry O_TRUNC",
    "DestinationEndpoint": Home("provex.destination_endpoint"),
    "DestinationIsApiServer": Home("labels.provex_destination", {"true": ["kubernetes-apiserver"]}),
    "AddressFamily": Home("network.type", {"2": ["ipv4"], "10": ["ipv6"]}),
    "PeerPodName": Home("provex.peer_pod.name"),
    "PeerPodNamespace": Home("provex.peer_pod.namespace"),
    "PeerPodUid": Home("provex.peer_pod.uid"),
    "NamespaceType": "ECS documents carry namespace names (labels.provex_namespaces), not the raw flags",
    "NamespaceTypes": Home("labels.provex_namespaces"),
    "NamespaceFd": "ECS documents do not carry the setns fd",
    "MountSource": Home("labels.provex_mount_source"),
    "MountTarget": Home("file.path"),
    "MountFsType": Home("labels.provex_mount_fstype"),
    "MountFlags": "ECS documents do not carry mount flags",
    # Documents never hold empty values: a container.id means "in a container".
    "IsContainer": Home("container.id", {"true": [EXISTS]}),
    "ContainerId": Home("container.id"),
    "ContainerName": Home("container.name"),
    "ContainerImage": Home("container.image.name"),
    "ContainerRuntime": Home("container.runtime"),
    "IsContainerRuntime": Home("provex.by_container_runtime"),
    "PodName": Home("orchestrator.resource.name"),
    "PodNamespace": Home("orchestrator.namespace"),
    "PodUid": Home("orchestrator.resource.id"),
    "ServiceAccount": "the ECS mapping does not carry the Pod's service account",
    "NodeName": "host.name is the agent's node on every document, also without a Pod (NodeName is empty there)",
    "PodIp": Home("provex.pod_ip"),
    **{f"AncestorProcessId{n}": Home(f"provex.lineage.ancestor_{n}") for n in range(1, 5)},
    "IsHostMount": Home("provex.in_host_mount"),
    "HostMountPath": Home("provex.host_path"),
    "HostMountContainerPath": Home("provex.host_mount.container_path"),
    "HostMountReadOnly": Home("provex.host_mount.read_only", _READ_ONLY),
    "IsLate": Home("labels.provex_enrichment", {"true": ["late"]}),
    "ProgramCarrier": Home("provex.program_carrier"),
    "ImageKernelName": Home("provex.image_kernel_name"),
    "StdinType": Home("provex.stdin_type"),
    "FileIdentity": Home("provex.file_identity"),
    "FileVerdict": Home("provex.file_verdict"),
    "IsSensitiveFile": Home("provex.sensitive_file", _READ_ONLY),
    "FileRealPath": Home("provex.real_path"),
    "IsOwnSecret": Home("provex.own_secret", _READ_ONLY),
    "IsOtherContainerSecret": Home("provex.other_container_secret", _READ_ONLY),
    "RepeatCount": Home("provex.repeats"),
    "SummaryKind": Home("provex.summary.kind"),
    "SummaryCount": Home("provex.summary.count"),
}

_OCSF_SYSCALL = "OCSF Process and Network Activity do not carry the syscall variant"

OCSF: dict[str, Entry | PerCategory] = {
    # An exec's Image is the new program (process.*); elsewhere the actor's.
    "Image": {"process_creation": Home("process.file.path"), "*": Home("actor.process.file.path")},
    "CommandLine": {"process_creation": Home("process.cmd_line"), "*": Home("actor.process.cmd_line")},
    "ParentImage": Home("actor.process.parent_process.file.path"),
    "ParentCommandLine": Home("actor.process.parent_process.cmd_line"),
    "User": "OCSF documents carry the numeric uid (actor.user.uid), not the user name",
    "ProcessId": Home("actor.process.pid"),
    "ParentProcessId": Home("actor.process.parent_process.pid"),
    "TargetFilename": Home("file.path"),
    "DestinationIp": Home("dst_endpoint.ip"),
    "DestinationPort": Home("dst_endpoint.port"),
    "SourceIp": Home("src_endpoint.ip"),
    "SourcePort": Home("src_endpoint.port"),
    "Initiated": Home("connection_info.direction_id", {"true": [2], "false": [1]}),
    # What the provenance graph resolved: unmapped.provex, the ECS custom fields' names.
    "TargetFilenameAsGiven": Home("unmapped.provex.path_as_given"),
    "ImageAsGiven": Home("unmapped.provex.path_as_given"),
    "PathResolution": Home("unmapped.provex.path_resolution"),
    "InterpretedFile": Home("unmapped.provex.interpreted_file"),
    "ExecutedFiles": Home("unmapped.provex.executed_files"),
    "ExecutedFileFromNetwork": Home("unmapped.provex.executable_from_network"),
    "EventType": "OCSF has no single field for it: the logsource category selects the class",
    "Syscall": {
        "file_access": Home("unmapped.linux.syscall"),
        "file_event": Home("unmapped.linux.syscall"),
        "mount": Home("unmapped.linux.syscall"),
        "setns": Home("kernel.system_call"),
        "unshare": Home("kernel.system_call"),
        "*": _OCSF_SYSCALL,
    },
    "Comm": Home("actor.process.name"),
    "ThreadId": Home("actor.process.tid"),
    "UserId": Home("actor.user.uid", text=True),
    "GroupId": Home("actor.process.group.uid", text=True),
    "ReturnCode": "OCSF keeps the errno name (status_code), not the return value",
    "Success": Home("status_id", {"true": [1, 0], "false": [2]}),
    "AncestorImages": "the process's ancestors are not written into OCSF documents",
    "OpenFlags": Home("unmapped.linux.open_flags"),
    "OpenWrite": "only the raw flags (unmapped.linux.open_flags) say it, and Sigma has no bit test",
    "OpenCreate": Home("activity_id", {"true": [1]}),
    "OpenTruncate": "only the raw flags (unmapped.linux.open_flags) say it, and Sigma has no bit test",
    "DestinationEndpoint": Home("unmapped.provex.destination_endpoint"),
    "DestinationIsApiServer": Home("dst_endpoint.svc_name", {"true": ["kubernetes-apiserver"]}),
    "AddressFamily": Home("connection_info.protocol_ver_id", {"2": [4], "10": [6]}),
    "PeerPodName": Home("unmapped.provex.peer_pod.name"),
    "PeerPodNamespace": Home("unmapped.provex.peer_pod.namespace"),
    "PeerPodUid": Home("unmapped.provex.peer_pod.uid"),
    "NamespaceType": Home("unmapped.linux.nstype"),
    "NamespaceTypes": Home("unmapped.linux.namespaces"),
    "NamespaceFd": Home("unmapped.linux.fd"),
    "MountSource": Home("unmapped.linux.mount.source"),
    # file.path of a mount without a target (fsopen, fsconfig, open_tree) names its source.
    "MountTarget": Home("unmapped.linux.mount.target"),
    "MountFsType": Home("unmapped.linux.mount.fstype"),
    "MountFlags": Home("unmapped.linux.mount.flags"),
    "IsContainer": Home("actor.process.container.uid", {"true": [EXISTS]}),
    "ContainerId": Home("actor.process.container.uid"),
    "ContainerName": Home("actor.process.container.name"),
    "ContainerImage": Home("actor.process.container.image.name"),
    "ContainerRuntime": Home("actor.process.container.runtime"),
    "IsContainerRuntime": Home("unmapped.provex.by_container_runtime"),
    "PodName": Home("unmapped.k8s.pod.name"),
    "PodNamespace": Home("unmapped.k8s.pod.namespace"),
    "PodUid": Home("actor.process.container.pod_uuid"),
    "ServiceAccount": Home("unmapped.k8s.pod.service_account"),
    "NodeName": Home("unmapped.k8s.pod.node"),
    "PodIp": Home("unmapped.provex.pod_ip"),
    **{f"AncestorProcessId{n}": Home(f"unmapped.provex.lineage.ancestor_{n}") for n in range(1, 5)},
    "IsHostMount": Home("unmapped.provex.in_host_mount"),
    "HostMountPath": Home("unmapped.provex.host_path"),
    "HostMountContainerPath": Home("unmapped.provex.host_mount.container_path"),
    "HostMountReadOnly": Home("unmapped.provex.host_mount.read_only", _READ_ONLY),
    "IsLate": Home("unmapped.provex.enrichment", {"true": ["late"]}),
    "ProgramCarrier": Home("unmapped.provex.program_carrier"),
    "ImageKernelName": Home("unmapped.provex.image_kernel_name"),
    "StdinType": Home("unmapped.provex.stdin_type"),
    "FileIdentity": Home("unmapped.provex.file_identity"),
    "FileVerdict": Home("unmapped.provex.file_verdict"),
    "IsSensitiveFile": Home("unmapped.provex.sensitive_file", _READ_ONLY),
    "FileRealPath": Home("unmapped.provex.real_path"),
    "IsOwnSecret": Home("unmapped.provex.own_secret", _READ_ONLY),
    "IsOtherContainerSecret": Home("unmapped.provex.other_container_secret", _READ_ONLY),
    "RepeatCount": Home("unmapped.provex.repeats"),
    "SummaryKind": Home("unmapped.provex.summary.kind"),
    "SummaryCount": Home("unmapped.provex.summary.count"),
}

HOMES: dict[str, dict[str, Entry | PerCategory]] = {"ecs": ECS, "ocsf": OCSF}

# Logsource category -> the document conditions that select its events.
# A str: why the category cannot be selected exactly in that schema.
Conditions = dict[str, Scalar | list[Scalar]]
_OPEN_ACTIONS = _EVENT_TYPE_ACTIONS["open"]
LOGSOURCES: dict[str, dict[str, Conditions | str]] = {
    # ECS: by event.action (the syscall), a single value: event.category and
    # event.type are arrays, which not every engine compares element-wise.
    "ecs": {
        "process_creation": {"event.action": list(_EVENT_TYPE_ACTIONS["exec"])},
        "file_access": {"event.action": list(_OPEN_ACTIONS)},
        "file_event": {"event.action": list(_OPEN_ACTIONS), "event.type": ["change", "creation"]},
        "network_connection": {
            "event.action": ["connect", "accept", "accept4"],
            "network.type": ["ipv4", "ipv6"],
        },
        "mount": {"event.action": list(_EVENT_TYPE_ACTIONS["mount"])},
        "setns": {"event.action": "setns"},
        "unshare": {"event.action": "unshare"},
        "sensor": {"event.dataset": "provex.sensor"},
    },
    "ocsf": {
        "process_creation": {"class_uid": 1007},
        "file_access": {"class_uid": 1001, "activity_id": [14, 1]},
        "file_event": "a write without O_CREAT is an OCSF Open like a read: only the raw flags tell",
        "network_connection": {"class_uid": 4001, "connection_info.protocol_ver_id": [4, 6]},
        "mount": {"class_uid": 1001, "activity_id": 12},
        "setns": {"class_uid": 1003, "kernel.system_call": "setns"},
        "unshare": {"class_uid": 1003, "kernel.system_call": "unshare"},
        "sensor": {"class_uid": 1003, "activity_id": 99},
    },
}

# Loki's `| json` parser skips arrays and ES|QL compares a multi-valued field
# as null: there a rule cannot test an array-valued ECS field.
# The array-valued fields among the homes and logsource fields (a test checks
# them against the golden documents). Splunk names them with a `{}` suffix.
ARRAY_FIELDS: dict[str, frozenset[str]] = {
    "ecs": frozenset({"event.type", "labels.provex_namespaces", "provex.executed_files"}),
    "ocsf": frozenset({"unmapped.linux.namespaces", "unmapped.provex.executed_files"}),
}
SCALAR_LOGSOURCES: dict[str, Conditions | str] = {
    **LOGSOURCES["ecs"],
    "file_event": "only event.type, an array, tells a write from a read",
}

# provex rules see only successful syscalls unless x-provex-include-failed
# (exporter.taxonomy.fields.succeeded: a connect in progress counts).
SUCCESS: dict[str, Conditions] = {
    "ecs": {"event.outcome": ["success", "unknown"]},
    "ocsf": {"status_id": [1, 0]},
}


class NoHome(Exception):
    """A rule uses a field (or value) that the schema's documents do not carry."""

    def __init__(self, field: str, schema: str, reason: str) -> None:
        super().__init__(f"{field} has no home in {schema.upper()}: {reason}")
        self.field, self.schema, self.reason = field, schema, reason


def home_of(schema: str, name: str, category: str | None, no_arrays: str = "") -> Home:
    """The document field of taxonomy field `name` for a rule of `category`; NoHome if none.

    `no_arrays`: the target cannot test array fields (the reason why)."""
    entry = HOMES[schema].get(name)
    if entry is None:
        raise NoHome(name, schema, "not a provex rule field (see exporter/taxonomy/FIELDS.md)")
    if isinstance(entry, dict):
        entry = entry.get(category or "*", entry["*"])
    if isinstance(entry, str):
        raise NoHome(name, schema, entry)
    if no_arrays and entry.field in ARRAY_FIELDS.get(schema, frozenset()):
        raise NoHome(name, schema, f"{entry.field} is an array, and {no_arrays}")
    return entry
