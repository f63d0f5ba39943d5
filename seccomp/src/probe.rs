//! What the running kernel supports, asked with `seccomp(2)` calls that install nothing.

/// The answers of the running kernel, each asked once.
#[derive(Default)]
pub(crate) struct KernelProbe {
    actions: Vec<(u32, bool)>,
    flags: Vec<(libc::c_ulong, bool)>,
}

impl KernelProbe {
    /// `SECCOMP_GET_ACTION_AVAIL`, and `SECCOMP_GET_NOTIF_SIZES` for `USER_NOTIF`.
    pub(crate) fn action_supported(&mut self, action: u32) -> bool {
        if let Some((_, ok)) = self.actions.iter().find(|(a, _)| *a == action) {
            return *ok;
        }
        // SAFETY: `action` is a valid u32 the kernel reads and does not keep.
        let mut ok = unsafe {
            libc::syscall(
                libc::SYS_seccomp,
                libc::SECCOMP_GET_ACTION_AVAIL as libc::c_ulong,
                0 as libc::c_ulong,
                &action as *const u32,
            )
        } == 0;
        if ok && action == libc::SECCOMP_RET_USER_NOTIF {
            // SAFETY: an all-zero seccomp_notif_sizes is valid; the kernel fills it in.
            let mut sizes: libc::seccomp_notif_sizes = unsafe { std::mem::zeroed() };
            // SAFETY: `sizes` is a writable seccomp_notif_sizes that outlives the call.
            ok = unsafe {
                libc::syscall(
                    libc::SYS_seccomp,
                    libc::SECCOMP_GET_NOTIF_SIZES as libc::c_ulong,
                    0 as libc::c_ulong,
                    &mut sizes as *mut libc::seccomp_notif_sizes,
                )
            } == 0;
        }
        self.actions.push((action, ok));
        ok
    }

    /// Whether `seccomp(SECCOMP_SET_MODE_FILTER, flags, NULL)` gets past the flags check: the
    /// kernel checks the flags first (EINVAL) and only then reads the program (EFAULT here), so
    /// nothing is installed.
    pub(crate) fn flag_supported(&mut self, flags: libc::c_ulong) -> bool {
        if let Some((_, ok)) = self.flags.iter().find(|(f, _)| *f == flags) {
            return *ok;
        }
        // WAIT_KILLABLE_RECV is only accepted together with NEW_LISTENER.
        let probe = if flags & libc::SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV != 0 {
            flags | libc::SECCOMP_FILTER_FLAG_NEW_LISTENER
        } else {
            flags
        };
        // SAFETY: a null program pointer: the kernel fails with EFAULT when it tries to read it.
        let r = unsafe {
            libc::syscall(
                libc::SYS_seccomp,
                libc::SECCOMP_SET_MODE_FILTER as libc::c_ulong,
                probe,
                std::ptr::null::<libc::sock_fprog>(),
            )
        };
        let ok = r < 0 && crate::install::errno() == libc::EFAULT;
        self.flags.push((flags, ok));
        ok
    }
}
