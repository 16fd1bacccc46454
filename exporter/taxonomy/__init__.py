"""Shared vocabulary every stage may read: the field taxonomy the rules and the mappings name
(`fields`), MITRE ATT&CK techniques and tactics (`attack`), and host-mount helpers
(`hostmounts`). It imports only the event model, so a process that maps documents does not
pull in the correlator (networkx, pySigma)."""
