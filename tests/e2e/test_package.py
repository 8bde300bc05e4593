"""The Debian package, built by CPack from this build tree and unpacked into a
scratch root with `dpkg -x`: the binary runs from it (`inkflow --version`
names the version and commit of the build), the control file declares the
runtime dependencies, and the docs, example configs with their data and the
systemd unit are where docs/operations.md says; an example config from the
package validates and runs against the packaged data."""
import glob
import os
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.dirname(__file__))
import inkt  # noqa: E402

d = inkt.tmpdir()
cpack = shutil.which("cpack") or "/usr/bin/cpack"
p = inkt.run([cpack, "-G", "DEB", "-B", d, "--config", os.path.join(inkt.BUILD, "CPackConfig.cmake")],
             timeout=300)
debs = glob.glob(os.path.join(d, "inkflow_*.deb"))
inkt.check(p.returncode == 0 and len(debs) == 1, "cpack built one .deb (rc=%d: %s)" % (
    p.returncode, (p.stdout + p.stderr).decode()[-400:]))
if not debs:
    inkt.finish()
deb = debs[0]
ctl = inkt.run(["dpkg-deb", "-f", deb, "Package", "Version", "Architecture", "Depends"])
fields = dict(l.split(": ", 1) for l in ctl.stdout.decode().splitlines() if ": " in l)
deps = fields.get("Depends", "")
inkt.check(fields.get("Package") == "inkflow" and fields.get("Architecture") == "amd64",
           "control: package inkflow, amd64 (%s)" % fields)
for lib in ("libzmq5", "libmsgpackc2", "libfyaml0", "libjansson4", "libmicrohttpd12", "liblapacke",
            "libopenblas0"):
    inkt.check(lib in deps, "Depends declares %s" % lib)
# every shared library the binary needs is provided by a declared package
exe = os.path.abspath(inkt.INKFLOW)
need = [l.split()[-1] for l in inkt.run(["objdump", "-p", exe]).stdout.decode().splitlines()
        if l.strip().startswith("NEEDED")] if shutil.which("objdump") else []
missing = []
for so in need:
    q = subprocess.run(["dpkg", "-S", "*/" + so], capture_output=True, text=True)
    owners = {line.split(":")[0] for line in q.stdout.splitlines() if ":" in line}
    if not any(o in deps for o in owners):
        missing.append((so, sorted(owners)))
inkt.check(not missing, "each NEEDED library of the binary (%d) comes from a declared package; "
           "missing: %s" % (len(need), missing))

root = os.path.join(d, "root")
x = inkt.run(["dpkg", "-x", deb, root])
inkt.check(x.returncode == 0, "dpkg -x unpacks it into a scratch root")
binary = os.path.join(root, "usr", "bin", "inkflow")
v = inkt.run([binary, "--version"])
want = inkt.run([inkt.INKFLOW, "--version"]).stdout
inkt.check(v.returncode == 0 and v.stdout == want and b"commit" in v.stdout,
           "the unpacked inkflow --version runs: %s" % v.stdout.decode().strip())
for rel in ("usr/share/doc/inkflow/README.md", "usr/share/doc/inkflow/docs/ecdf.md",
            "usr/share/doc/inkflow/docs/operations.md", "usr/share/inkflow/configs/ecdf.yaml",
            "usr/share/inkflow/data/sensors-2010.csv", "lib/systemd/system/inkflow@.service"):
    inkt.check(os.path.isfile(os.path.join(root, rel)), "the package holds /%s" % rel)
unit = open(os.path.join(root, "lib/systemd/system/inkflow@.service")).read()
inkt.check("ExecStart=/usr/bin/inkflow run /etc/inkflow/%i.yaml --restore=auto" in unit
           and "KillSignal=SIGTERM" in unit, "the unit runs /etc/inkflow/%i.yaml, SIGTERM, --restore=auto")
if shutil.which("systemd-analyze"):
    # verify with the unpacked binary in the path the unit names: only syntax is judged here
    sa = inkt.run(["systemd-analyze", "verify", "--man=no",
                   os.path.join(root, "lib/systemd/system/inkflow@.service")])
    errs = [l for l in sa.stderr.decode().splitlines()
            if "inkflow@.service" in l and "Unknown" in l]
    inkt.check(not errs, "systemd-analyze finds no unknown keys in the unit: %s" % errs)
ex = os.path.join(root, "usr/share/inkflow/configs/ecdf.yaml")
r = inkt.run([binary, "run", ex])
inkt.check(r.returncode == 0 and r.stdout.count(b"\n") > 30,
           "the packaged configs/ecdf.yaml runs on the packaged data with the packaged binary")
inkt.finish()
