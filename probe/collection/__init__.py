"""From volunteer to researcher: OONI's collector protocol (bk-003), spoken by
`probe submit` (the client) and `probe collect` (the collector researchers deploy)."""
