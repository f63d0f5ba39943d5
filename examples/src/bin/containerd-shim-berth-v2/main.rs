//! `containerd-shim-berth-v2`: containerd's runtime `io.containerd.berth.v2`. All of it is in
//! `berth-containerd-shim` (the protocol) and `berth-shim-core` (the supervision).

fn main() {
    berth_containerd_shim::main()
}
