//! The only module with `unsafe`: the inode-flags ioctls and closing inherited fds, which
//! no safe API in our dependency set offers. Everything else uses nix's safe wrappers.
//!
//! Architecture invariant: no `unsafe` outside this module (`unsafe_code` is denied for
//! the workspace; this module alone allows it).
#![expect(
    unsafe_code,
    reason = "raw ioctl and close calls; no safe wrapper exists in our dependencies"
)]

use std::os::fd::AsRawFd;

// The kernel declares these as _IOR/_IOW('f', 1/2, long), but ext4, xfs, btrfs and the
// generic fileattr code copy an `int` in both directions. So the request number carries
// sizeof(long) while the buffer we pass is a c_int.
const FS_IOC_GETFLAGS: u64 =
    nix::request_code_read!(b'f', 1, std::mem::size_of::<libc::c_long>()) as u64;
const FS_IOC_SETFLAGS: u64 =
    nix::request_code_write!(b'f', 2, std::mem::size_of::<libc::c_long>()) as u64;

nix::ioctl_read_bad!(raw_getflags, FS_IOC_GETFLAGS, libc::c_int);
nix::ioctl_write_ptr_bad!(raw_setflags, FS_IOC_SETFLAGS, libc::c_int);

/// Reads the inode flags (the bits `lsattr` shows) of an open file.
pub fn get_flags(file: &impl AsRawFd) -> nix::Result<u32> {
    let mut v: libc::c_int = 0;
    // SAFETY: the fd is open for the lifetime of `file`; `v` is a valid, writable c_int,
    // which is exactly what the kernel copies out for this request.
    unsafe { raw_getflags(file.as_raw_fd(), &mut v) }?;
    Ok(v as u32)
}

/// Replaces the inode flags of an open file.
pub fn set_flags(file: &impl AsRawFd, flags: u32) -> nix::Result<()> {
    let v = flags as libc::c_int;
    // SAFETY: the fd is open; `v` lives across the call and the kernel only reads a c_int.
    unsafe { raw_setflags(file.as_raw_fd(), &v) }?;
    Ok(())
}

/// Closes every inherited descriptor above stderr. Daemons call this first, so that a
/// pipe some caller waits on for EOF (a test runner's, `docker exec`'s) is never kept
/// open by a process that lives for hours.
pub fn close_inherited_fds() {
    let fds: Vec<i32> = match std::fs::read_dir("/proc/self/fd") {
        Ok(rd) => rd
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
            .filter(|&fd| fd > 2)
            .collect(),
        Err(_) => return,
    };
    // The directory handle used for the listing is closed by now; closing its stale
    // number is a harmless EBADF.
    for fd in fds {
        // SAFETY: called at daemon start, before this process opened or wrapped any fd
        // of its own above 2, so no Rust owner of these descriptors exists.
        unsafe { libc::close(fd) };
    }
}
