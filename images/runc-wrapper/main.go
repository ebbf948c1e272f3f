// Command terminus-runc is a thin wrapper around runc for hosts whose capability
// bounding set is smaller than the full set (this VM lacks CAP_SYS_RESOURCE).
//
// Docker's --privileged mode asks runc for every capability it knows; runc then fails
// with "unable to apply caps: operation not permitted" because a process cannot gain a
// capability outside its bounding set. Before handing over to the real runc, this wrapper
// drops from the OCI process spec every capability that this process's own bounding set
// does not contain:
//   - on `create` and `run`: in <bundle>/config.json (bundle from --bundle/-b, else cwd);
//   - on `exec`: in the file given with --process/-p.
//
// Everything else is passed through unchanged with execve(2).
//
// The real runc is $TERMINUS_REAL_RUNC, else /usr/sbin/runc, else /usr/bin/runc.
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// capNames maps Linux capability numbers to the names used in OCI specs.
var capNames = []string{
	"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID",
	"CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE",
	"CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW",
	"CAP_IPC_LOCK", "CAP_IPC_OWNER", "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT",
	"CAP_SYS_PTRACE", "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE",
	"CAP_SYS_RESOURCE", "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE",
	"CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE",
	"CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ",
	"CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE",
}

// missingCaps returns the names of known capabilities absent from our bounding set.
func missingCaps() (map[string]bool, error) {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "CapBnd:") {
			continue
		}
		mask, err := strconv.ParseUint(strings.TrimSpace(strings.TrimPrefix(line, "CapBnd:")), 16, 64)
		if err != nil {
			return nil, err
		}
		missing := map[string]bool{}
		for i, name := range capNames {
			if mask&(1<<uint(i)) == 0 {
				missing[name] = true
			}
		}
		return missing, nil
	}
	return nil, fmt.Errorf("no CapBnd line in /proc/self/status")
}

// filterCaps removes missing capabilities from every list of a capabilities object.
func filterCaps(caps map[string]interface{}, missing map[string]bool) bool {
	changed := false
	for set, v := range caps {
		list, ok := v.([]interface{})
		if !ok {
			continue
		}
		kept := make([]interface{}, 0, len(list))
		for _, c := range list {
			if s, ok := c.(string); ok && missing[s] {
				changed = true
				continue
			}
			kept = append(kept, c)
		}
		caps[set] = kept
	}
	return changed
}

// rewrite edits the JSON file at path; processKey is "process" for a bundle's
// config.json and "" for an exec process file (whose top level is the process).
func rewrite(path, processKey string, missing map[string]bool) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var doc map[string]interface{}
	if err := dec.Decode(&doc); err != nil {
		return fmt.Errorf("parse %s: %w", path, err)
	}
	proc := doc
	if processKey != "" {
		p, ok := doc[processKey].(map[string]interface{})
		if !ok {
			return nil
		}
		proc = p
	}
	caps, ok := proc["capabilities"].(map[string]interface{})
	if !ok || !filterCaps(caps, missing) {
		return nil
	}
	out, err := json.Marshal(doc)
	if err != nil {
		return err
	}
	info, err := os.Stat(path)
	if err != nil {
		return err
	}
	tmp := path + ".terminus-tmp"
	if err := os.WriteFile(tmp, out, info.Mode().Perm()); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// flagValue finds --name VALUE, --name=VALUE, -s VALUE in args after the subcommand.
func flagValue(args []string, long, short string) (string, bool) {
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--":
			return "", false
		case a == long || a == "-"+strings.TrimLeft(long, "-") || (short != "" && a == short):
			if i+1 < len(args) {
				return args[i+1], true
			}
		case strings.HasPrefix(a, long+"="):
			return strings.TrimPrefix(a, long+"="), true
		case strings.HasPrefix(a, "-"+strings.TrimLeft(long, "-")+"="):
			return strings.TrimPrefix(a, "-"+strings.TrimLeft(long, "-")+"="), true
		}
	}
	return "", false
}

// globalFlagsWithValue are runc's global options that take a separate value.
var globalFlagsWithValue = map[string]bool{
	"--root": true, "--log": true, "--log-format": true, "--criu": true, "--rootless": true,
}

// subcommand returns the index of runc's subcommand in args (skipping global options).
func subcommand(args []string) int {
	for i := 0; i < len(args); i++ {
		a := args[i]
		if !strings.HasPrefix(a, "-") {
			return i
		}
		if globalFlagsWithValue[a] && !strings.Contains(a, "=") {
			i++
		}
	}
	return -1
}

func realRunc() string {
	if p := os.Getenv("TERMINUS_REAL_RUNC"); p != "" {
		return p
	}
	for _, p := range []string{"/usr/sbin/runc", "/usr/bin/runc", "/usr/local/sbin/runc"} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return "runc"
}

func main() {
	args := os.Args[1:]
	if i := subcommand(args); i >= 0 {
		rest := args[i+1:]
		var err error
		switch args[i] {
		case "create", "run":
			bundle, ok := flagValue(rest, "--bundle", "-b")
			if !ok {
				bundle, _ = os.Getwd()
			}
			var missing map[string]bool
			if missing, err = missingCaps(); err == nil && len(missing) > 0 {
				err = rewrite(filepath.Join(bundle, "config.json"), "process", missing)
			}
		case "exec":
			if pf, ok := flagValue(rest, "--process", "-p"); ok {
				var missing map[string]bool
				if missing, err = missingCaps(); err == nil && len(missing) > 0 {
					err = rewrite(pf, "", missing)
				}
			}
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "terminus-runc: %v\n", err)
			os.Exit(1)
		}
	}
	bin := realRunc()
	if !strings.Contains(bin, "/") {
		fmt.Fprintln(os.Stderr, "terminus-runc: real runc not found")
		os.Exit(1)
	}
	argv := append([]string{bin}, args...)
	if err := syscall.Exec(bin, argv, os.Environ()); err != nil {
		fmt.Fprintf(os.Stderr, "terminus-runc: exec %s: %v\n", bin, err)
		os.Exit(1)
	}
}
