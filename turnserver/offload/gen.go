package offload

// The eBPF object and its Go bindings (relay_bpfel.go, relay_bpfeb.go and their .o files)
// are generated from bpf/relay.c by `make bpf`, which runs bpf2go with clang and the kernel
// headers of libbpf-dev and linux-libc-dev; they are committed, so that building Ferry
// needs no C toolchain.
