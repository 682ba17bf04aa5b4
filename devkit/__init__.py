"""Not the product at run time, but shared by the demo, the tests and the benchmarks: the simulated
Meshtastic device, stream framing, the link proxy, the demo orchestrator and the process/broker harness."""
