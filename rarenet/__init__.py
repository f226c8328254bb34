"""rarenet: the one import namespace of the installed project.

`rarenet.baseline` is the central service (ingest, store, baselines, scoring,
delivery, CLI) and `rarenet.extension` the on-host side (osquery extension and /proc
collector). In a source checkout both are links to the top-level `baseline/` and
`extension/` folders; a wheel holds them as `rarenet/baseline/` and
`rarenet/extension/`, with the `queries/` the packs are built from and the `packs/`
built from them. Importing `rarenet` imports neither: hosts install the extension
without the service's dependencies.
"""
