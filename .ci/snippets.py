#!/usr/bin/env python3
"""Runs every code block of README.md and docs/*.md, or says why it cannot, and fails
on the first that does not do what the page says.

    python3 .ci/snippets.py target/debug/job-launcher-mock [PAGE...]

The convention (docs/development.md, "Snippets that run", says the same for writers):

- Every fenced block has a language, and its fences start their lines.
- The line right above a block may mark it:
    <!-- snippet: PATH -->    the block is PATH's text, as consecutive lines; PATH is
                              what CI runs (a test, a fixture, a manifest).
    <!-- server -->          the block's first command starts the mock
                              (`job-launcher-mock FLAGS`, or `cargo run --release --
                              FLAGS` from a clone): the built binary is started with those
                              flags on a free port, and the rest of the block and the
                              page's later blocks talk to it.
    <!-- not run: REASON -->  it cannot run here (a cluster, another machine); REASON
                              says what checks it instead.
- Unmarked blocks: `sh` is run, command by command, against the page's mock (each page
  starts one with no flags); `localhost:8083` and `127.0.0.1:8083` become its address.
  `python` is run the same way, as one script. `json` and `toml` must parse. `text` is
  not code. Anything else (`rust`, `yaml`) must be an excerpt: Rust snippets are tests
  in tests/it, which cargo test runs.
- A shell command is one line, or more while a quote is open or a line ends in `\\`.
  The comment lines right under it are its output: compared with whitespace removed,
  `...` standing for anything. A comment after a blank line is prose. A command with
  no output under it must succeed: exit 0, and every curl in it answered 2xx or 3xx.
  A command whose comment says `Ctrl-C` (an event stream) runs until its output has
  appeared, then is stopped.
- Every relative link (`[text](docs/faults.md#a-rule)`, an image) must name a file
  that exists and, for a page, one of its headings.
- `cargo install` runs as `cargo install ... --debug --force --root SCRATCH` on the
  repository's own target/ (so it copies the binary cargo test built rather than
  building a release), and `job-launcher-mock` is that copy from then on.

Commands run in a scratch directory that links the repository's files, so a page's
`--data-dir ./jlm-data` or `cd` leaves nothing behind.
"""

import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / ".ci"))
from container_docs import MARKER as SNIPPET  # noqa: E402  (one meaning of the marker)

FENCE = re.compile(r"^```(\S*)\s*$")
NOT_RUN = re.compile(r"^<!-- not run: (.+) -->$")
SERVER = "<!-- server -->"
ADDRESS = re.compile(r"(localhost|127\.0\.0\.1):8083")
LINK = re.compile(r"\]\(([^)\s]+)\)")
# Files the pages link to that are being written elsewhere, with why; a link to one may
# dangle until it exists, and once it exists its entry here must go.
PENDING: dict[str, str] = {}
# A bound on each step, so that a page that hangs fails CI rather than stalling it;
# nothing waits for it to pass.
LIMIT = 60


class Failure(Exception):
    pass


@dataclass
class Block:
    page: Path
    line: int  # of the opening fence, from 1
    lang: str
    marker: str
    lines: list

    def where(self, offset=0):
        return f"{self.page.relative_to(REPO)}:{self.line + 1 + offset}"


@dataclass
class Command:
    line: int  # within the block, from 0
    text: str
    expected: list = field(default_factory=list)


@dataclass
class Tally:
    run: int = 0
    commands: int = 0
    outputs: int = 0
    servers: int = 0
    excerpts: int = 0
    parsed: int = 0
    prose: int = 0
    links: int = 0
    not_run: list = field(default_factory=list)

    def add(self, other):
        for name in ("run", "commands", "outputs", "servers", "excerpts", "parsed", "prose", "links"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.not_run += other.not_run

    def __str__(self):
        return (
            f"{self.run} blocks run ({self.commands} commands, {self.outputs} outputs "
            f"checked, {self.servers} mocks started), {self.excerpts} excerpts of files, "
            f"{self.parsed} parsed, {self.prose} text, {len(self.not_run)} not run; "
            f"{self.links} links"
        )


def blocks(page):
    lines = page.read_text().splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.lstrip().startswith("```") and not line.startswith("```"):
            raise Failure(f"{page.relative_to(REPO)}:{i + 1}: an indented code block")
        match = FENCE.match(line)
        if not match:
            i += 1
            continue
        end = next((j for j in range(i + 1, len(lines)) if lines[j] == "```"), None)
        if end is None:
            raise Failure(f"{page.relative_to(REPO)}:{i + 1}: a code block that never ends")
        marker = lines[i - 1] if i > 0 else ""
        yield Block(page, i + 1, match.group(1), marker, lines[i + 1 : end])
        i = end + 1


def slug(heading):
    """The anchor GitHub gives a heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(page):
    return {slug(line.lstrip("#")) for line in page.read_text().splitlines() if line.startswith("#")}


def check_links(page):
    """Each relative link of the page names a file that exists (and a heading of it)."""
    text = re.sub(r"^```.*?^```$", "", page.read_text(), flags=re.S | re.M)
    count = 0
    for target in LINK.findall(text):
        if re.match(r"[a-z]+:", target):
            continue  # http:, https:, mailto:
        path, _, anchor = target.partition("#")
        linked = (page.parent / path).resolve() if path else page
        where = f"{page.relative_to(REPO)}: the link to {target}"
        if not linked.exists():
            if linked.relative_to(REPO).as_posix() in PENDING:
                continue
            raise Failure(f"{where}: {path} does not exist")
        if anchor and linked.suffix == ".md" and anchor not in anchors(linked):
            raise Failure(f"{where}: {path or page.name} has no heading #{anchor}")
        count += 1
    return count


def balanced(text):
    try:
        shlex.split(text, comments=True)
        return True
    except ValueError:
        return False


def commands(block):
    lines, result, i = block.lines, [], 0
    while i < len(lines):
        line = lines[i]
        if not line.strip() or line.lstrip().startswith("#"):
            i += 1  # a blank line or prose
            continue
        start, text = i, line
        while text.endswith("\\") or not balanced(text):
            i += 1
            if i == len(lines):
                raise Failure(f"{block.where(start)}: a command that never ends")
            text += "\n" + lines[i]
        i += 1
        command = Command(start, text)
        while i < len(lines) and lines[i].lstrip().startswith("#"):
            command.expected.append(lines[i].lstrip()[1:])
            i += 1
        result.append(command)
    return result


def matches(expected, output):
    want = re.sub(r"\s+", "", "".join(expected))
    got = re.sub(r"\s+", "", output)
    pattern = ".*".join(re.escape(part) for part in want.split("..."))
    return re.fullmatch(pattern, got, re.DOTALL) is not None


class Mock:
    """The binary, started as a page's server block says, on a free port."""

    def __init__(self, scratch, env, argv, where):
        self.log = tempfile.TemporaryFile(mode="w+")
        argv = list(argv)
        # The page's port is the default or its own; the mock takes a free one.
        while "--port" in argv:
            at = argv.index("--port")
            del argv[at : at + 2]
        argv = [a for a in argv if not a.startswith("--port=")]
        self.process = subprocess.Popen(
            argv + ["--port", "0"],
            cwd=scratch,
            env=env,
            stdout=subprocess.PIPE,
            stderr=self.log,
            text=True,
            start_new_session=True,
        )
        line = read_line(self.process, LIMIT)
        if "listening on http://" not in line:
            self.process.kill()
            self.process.wait()
            raise Failure(f"{where}: {shlex.join(argv)} did not start: {line!r}\n{self.stderr()}")
        self.ready = line.strip()
        self.address = line.split("http://", 1)[1].strip()

    def stderr(self):
        self.log.seek(0)
        return self.log.read()

    def stop(self, where):
        self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(timeout=LIMIT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise Failure(f"{where}: the mock did not exit within {LIMIT}s of SIGTERM")
        if code != 0:
            raise Failure(f"{where}: the mock exited {code} on SIGTERM\n{self.stderr()}")


def read_line(process, limit):
    got = []
    reader = threading.Thread(target=lambda: got.append(process.stdout.readline()), daemon=True)
    reader.start()
    reader.join(limit)
    return got[0] if got else ""


class Page:
    def __init__(self, page, binary, scratch, env):
        self.page, self.binary, self.scratch, self.env = page, binary, scratch, env
        self.mock = None
        self.tally = Tally()

    def ensure(self, where):
        """The page's mock: with no flags, unless a server block started another."""
        if not self.mock:
            self.start([self.binary], where)

    def local(self, text):
        return ADDRESS.sub(self.mock.address, text)

    def as_shown(self, output):
        """The output with the mock's address written as the page writes it."""
        return output.replace(self.mock.address, "127.0.0.1:8083")

    def start(self, argv, where):
        if self.mock:
            self.mock.stop(where)
        self.mock = Mock(self.scratch, self.env, argv, where)
        self.tally.servers += 1

    def run(self):
        self.tally.links = check_links(self.page)
        try:
            for block in blocks(self.page):
                self.block(block)
        finally:
            if self.mock:
                self.mock.stop(f"{self.page.relative_to(REPO)}: at its end")
        return self.tally

    def block(self, block):
        snippet = SNIPPET.match(block.marker)
        not_run = NOT_RUN.match(block.marker)
        if snippet:
            self.excerpt(block, snippet.group(1))
        elif not_run:
            self.tally.not_run.append(f"{block.where(-1)} ({block.lang}): {not_run.group(1)}")
        elif block.marker == SERVER:
            if block.lang != "sh":
                raise Failure(f"{block.where(-1)}: a server block must be sh")
            self.shell(block, server=True)
        elif block.lang == "sh":
            self.shell(block, server=False)
        elif block.lang == "python":
            self.python(block)
        elif block.lang == "json":
            self.parse(block, json.loads)
        elif block.lang == "toml":
            self.parse(block, tomllib.loads)
        elif block.lang == "text":
            self.tally.prose += 1
        elif not block.lang:
            raise Failure(f"{block.where(-1)}: a code block without a language")
        else:
            raise Failure(
                f"{block.where(-1)}: a {block.lang} block must be marked as an excerpt of "
                "the file CI runs (<!-- snippet: PATH -->) or say why it is not run"
            )

    def excerpt(self, block, path):
        text = "\n".join(block.lines) + "\n"
        try:
            whole = (REPO / path).read_text()
        except OSError as e:
            raise Failure(f"{block.where(-1)}: the excerpt's file: {e}")
        if text not in whole:
            raise Failure(f"{block.where(-1)}: the excerpt is not in {path} as it is now")
        self.tally.excerpts += 1

    def parse(self, block, parser):
        try:
            parser("\n".join(block.lines))
        except ValueError as e:
            raise Failure(f"{block.where()}: not valid {block.lang}: {e}")
        self.tally.parsed += 1

    def python(self, block):
        self.ensure(block.where())
        script = Path(self.scratch) / f"snippet-{block.line}.py"
        script.write_text(self.local("\n".join(block.lines)) + "\n")
        done = subprocess.run(
            [sys.executable, str(script)],
            cwd=self.scratch,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=LIMIT,
        )
        if done.returncode != 0:
            raise Failure(f"{block.where()}: the script exited {done.returncode}\n{done.stderr}")
        self.tally.run += 1

    def shell(self, block, server):
        found = commands(block)
        if not found:
            raise Failure(f"{block.where()}: a shell block without a command")
        for i, command in enumerate(found):
            where = block.where(command.line)
            if server and i == 0:
                self.server(command, where)
                continue
            self.ensure(where)
            if "Ctrl-C" in command.text:
                self.stream(command, where)
            else:
                self.command(command, where)
        self.tally.commands += len(found)
        self.tally.run += 1

    def server(self, command, where):
        words = shlex.split(command.text, comments=True)
        if words[:3] == ["cargo", "run", "--release"]:
            flags = words[4:] if words[3:4] == ["--"] else words[3:]
        elif words[:1] == ["job-launcher-mock"]:
            flags = words[1:]
        else:
            raise Failure(f"{where}: a server block must start with job-launcher-mock or cargo run")
        binary = shutil.which("job-launcher-mock", path=self.env["PATH"])
        self.start([binary] + flags, where)
        if command.expected:
            self.check(command, self.as_shown(self.mock.ready + "\n"), where)

    def command(self, command, where):
        text = self.local(command.text)
        env = self.env
        words = shlex.split(text, comments=True)
        if words[:2] == ["cargo", "install"]:
            words = [str(REPO) if w == "." and words[i - 1] == "--path" else w
                     for i, w in enumerate(words)]
            text = shlex.join(words + ["--debug", "--force", "--root", str(self.scratch)])
            env = dict(env, CARGO_TARGET_DIR=str(REPO / "target"))
        try:
            done = subprocess.run(
                ["bash", "-o", "pipefail", "-c", text],
                cwd=self.scratch,
                env=env,
                capture_output=True,
                text=True,
                timeout=LIMIT,
            )
        except subprocess.TimeoutExpired:
            raise Failure(f"{where}: still running after {LIMIT}s: {command.text}")
        statuses = re.findall(r"^snippets: http (\d{3})$", done.stderr, re.M)
        if command.expected:
            self.check(command, self.as_shown(done.stdout), where)
            return
        problem = None
        if done.returncode != 0:
            problem = f"exited {done.returncode}"
        elif re.search(r"\bcurl\b", text) and not statuses:
            problem = "curl's status was not seen (a -w of its own?)"
        elif any(not s.startswith(("2", "3")) for s in statuses):
            problem = f"answered {', '.join(statuses)}"
        if problem:
            raise Failure(
                f"{where}: {problem}: {command.text}\nstdout: {done.stdout}\nstderr: {done.stderr}"
            )

    def stream(self, command, where):
        if not command.expected:
            raise Failure(f"{where}: a stream needs the output it is stopped at")
        process = subprocess.Popen(
            ["bash", "-c", self.local(command.text)],
            cwd=self.scratch,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            start_new_session=True,
        )
        seen, arrived = [], threading.Condition()

        def read():
            for line in process.stdout:
                with arrived:
                    seen.append(line)
                    arrived.notify()
            with arrived:
                seen.append(None)  # the stream ended
                arrived.notify()

        threading.Thread(target=read, daemon=True).start()
        with arrived:
            ok = arrived.wait_for(
                lambda: (seen and seen[-1] is None)
                or matches(command.expected, self.as_shown("".join(seen))),
                timeout=LIMIT,
            )
            output = "".join(s for s in seen if s is not None)
        os.killpg(process.pid, signal.SIGTERM)
        process.wait()
        if not ok or not matches(command.expected, self.as_shown(output)):
            self.mismatch(command, output, where)
        self.tally.outputs += 1

    def check(self, command, output, where):
        if not matches(command.expected, output):
            self.mismatch(command, output, where)
        self.tally.outputs += 1

    def mismatch(self, command, output, where):
        raise Failure(
            f"{where}: {command.text}\n  said: {'#'.join([''] + command.expected)}\n"
            f"   got: {output}"
        )


def scratch_dir():
    """A directory with links to the repository's files, and a bin/ of its own."""
    scratch = Path(tempfile.mkdtemp(prefix="jlm-snippets-"))
    for entry in REPO.iterdir():
        if entry.name not in (".git", "target"):
            (scratch / entry.name).symlink_to(entry)
    return scratch


def shim(scratch, binary):
    """bin/job-launcher-mock is the binary under test; bin/curl reports each status."""
    curl = shutil.which("curl")
    if not curl:
        raise Failure("curl is not installed")
    bin_dir = scratch / "bin"
    bin_dir.mkdir()
    (bin_dir / "job-launcher-mock").symlink_to(binary)
    (bin_dir / "curl").write_text(
        f"#!/bin/sh\nexec {shlex.quote(curl)} --write-out '%{{stderr}}snippets: http %{{http_code}}\\n' \"$@\"\n"
    )
    (bin_dir / "curl").chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith("JLM_") and k != "RUST_LOG"}
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    return env


def main(argv):
    if len(argv) < 2:
        raise SystemExit(__doc__)
    binary = Path(argv[1]).resolve()
    pages = [Path(p).resolve() for p in argv[2:]] or [REPO / "README.md"] + sorted(
        (REPO / "docs").glob("*.md")
    )
    for pending, why in PENDING.items():
        if (REPO / pending).exists():
            print(f"FAILED {pending} exists now: take it out of PENDING", file=sys.stderr)
            return 1
        print(f"links to {pending} may dangle until it exists: {why}")
    total = Tally()
    scratch = scratch_dir()
    try:
        env = shim(scratch, binary)
        for page in pages:
            tally = Page(page, str(binary), scratch, env).run()
            print(f"{page.relative_to(REPO)}: {tally}")
            total.add(tally)
    except Failure as failure:
        print(f"FAILED {failure}", file=sys.stderr)
        return 1
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    print(f"all pages: {total}")
    for reason in total.not_run:
        print(f"  not run: {reason}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
