"""Translate a .tps with the `gdal_translate` command, reporting to a
QgsProcessingFeedback; Cancel stops it at any stage.

* Why a child process: the driver solves inside GDAL's Open, which takes no
  progress function and cannot be interrupted in a process. A child can: on
  Cancel it is terminated (killed if it lingers), as QGIS's own GDAL
  algorithms do, whether it is solving or evaluating; the partial raster,
  and the lock and temporary model file the driver held beside the .tps,
  are removed.
* Progress: the solve reports in debug lines on stderr ('TPS: name:
  solving: <stage> 42%', docs/format.md, TPS_PROGRESS_INTERVAL; the run
  sets CPL_DEBUG=TPS for the child): the first half of the bar, the stage
  in its text. gdal_translate's own progress on stdout ('0...10...20'):
  the second half.
* Errors: the child's 'ERROR n: ' lines (the driver's messages, which name
  the file) become one QgsProcessingException.
* Settings: the child inherits the environment; the driver's configuration
  options set in this process only (gdal.SetConfigOption, not the
  environment) are passed with --config (FORWARDED). None of them is a
  secret; a PostGIS password is in the .tps, which is then written 0600
  (algorithm.py), never on the command line.

The raster is `gdal_translate -if TPS -of FORMAT [-oo DEVICE=...] x.tps
out`: the bytes of `gdal_translate x.tps out` (the tests compare them).
"""
import codecs
import glob
import os
import queue
import re
import shutil
import socket
import subprocess
import threading

from osgeo import gdal
from qgis.core import QgsProcessingException

# The quantities of docs/format.md, "Derivative bands", for a driver that
# does not list them in its metadata item TPS_QUANTITIES (comma-separated).
STATIC_QUANTITIES = ('value', 'dzdx', 'dzdy', 'slope', 'aspect', 'laplacian')

# The configuration options the driver reads (docs/format.md,
# "Configuration options"; the tests check this list against the driver's
# sources), GDAL's thread count, which it reads too, and where GDAL finds
# plugins: passed on to the child when this process has set them.
FORWARDED = ('TPS_ALLOWED_SOURCES', 'TPS_MAX_BANDS', 'TPS_MAX_SOLVES', 'TPS_MAX_POINTS',
             'TPS_MAX_MEMORY', 'TPS_GPU_MAX_MEMORY', 'TPS_MODEL_CACHE',
             'TPS_MODEL_CACHE_MAX_FILES', 'TPS_MODEL_LOCK_TIMEOUT', 'TPS_MODEL_LOCK_STALE',
             'TPS_PROGRESS_INTERVAL', 'TPS_PROGRESS_CHUNK_PAIRS', 'GDAL_NUM_THREADS',
             'GDAL_DRIVER_PATH')

SOLVING = re.compile(r'solving: (.*?) (\d+)%$')
SOLVED = re.compile(r': solved \d+ bands? over ')
LOCK_TAKEN = re.compile(r'^(.*\.lock): lock taken by pid (\d+) on ')
MODEL_FILE = re.compile(r': (?:wrote the solved model to|reused the solved model from) (.*)$')
MESSAGE = re.compile(r'^(ERROR|Warning) \d+: (.*)$')
INPUT_SIZE = re.compile(r'^Input file size is (\d+), (\d+)$')
REPORTED = ('POINT_COUNT', 'INPUT_POINTS', 'SMOOTHING', 'SMOOTHING_METHOD', 'EFFECTIVE_DF',
            'LOO_RMSE', 'MAX_ABS_RESIDUAL', 'MODE', 'PATCHES', 'SOLVE_DEVICE', 'DEVICE',
            'SOLVE_SECONDS')
NO_COMMAND = ('the gdal_translate command is not on the PATH: install GDAL\'s command line '
              'programs (Debian: gdal-bin), which run the spline for this algorithm')
POLL_S = 0.1          # how often Cancel is looked at while the child is quiet
KILL_AFTER_S = 5.0    # a terminated child still there after this is killed


def tps_driver():
    return gdal.GetDriverByName('TPS')


def gdal_translate():
    """The gdal_translate command (Debian: gdal-bin, which QGIS depends on)."""
    return shutil.which('gdal_translate')


def quantities():
    """What a band can show: the driver's list when it publishes one."""
    driver = tps_driver()
    listed = driver.GetMetadataItem('TPS_QUANTITIES') if driver is not None else None
    if listed:
        return tuple(q.strip() for q in listed.split(',') if q.strip())
    return STATIC_QUANTITIES


def allowed_sources_with(source, prefix):
    """TPS_ALLOWED_SOURCES as it is with `prefix` added, or None when it
    allows `source` already (ALL, or an item that starts it)."""
    current = (gdal.GetConfigOption('TPS_ALLOWED_SOURCES') or 'LOCAL').strip()
    items = [i for i in re.split(r'[\s,]+', current) if i]
    if any(i.upper() == 'ALL' or source.upper().startswith(i.upper()) for i in items):
        return None
    return ','.join(items + [prefix])


def _term_percent(text):
    """GDAL's terminal progress so far ('0...10...20..'): the last number,
    plus 2.5 for each dot after it."""
    numbers = list(re.finditer(r'\d+', text))
    if not numbers:
        return None
    last = numbers[-1]
    return min(100.0, int(last.group(0)) + 2.5 * text.count('.', last.end()))


class _Child:
    """What the child said, read as it comes and passed to the feedback."""

    def __init__(self, feedback):
        self.feedback = feedback
        self.failures = []
        self.other = []          # stderr lines that are none of GDAL's forms
        self.evaluating = False
        self.stage = None
        self.percent = None
        self.lock = None         # the model lock the child took
        self.model_file = None   # the model file it wrote or read
        self.no_driver = False
        self.after_failure = False
        self.buffers = {'stdout': '', 'stderr': ''}
        self.decoders = {k: codecs.getincrementaldecoder('utf-8')('replace')
                         for k in self.buffers}

    def feed(self, stream, data):
        """Bytes of stdout or stderr; None at its end."""
        text = self.decoders[stream].decode(data or b'', final=data is None)
        text = self.buffers[stream] + text.replace('\r', '\n')
        *lines, rest = text.split('\n')
        if data is None and rest:
            lines, rest = lines + [rest], ''
        self.buffers[stream] = rest
        for line in lines:
            if self.feedback.isCanceled():   # nothing more reaches it after Cancel
                self.feedback = _Silent()
            (self._stdout_line if stream == 'stdout' else self._stderr_line)(line)
        if stream == 'stdout' and self.evaluating:
            self._term(rest)

    def _stdout_line(self, line):
        m = INPUT_SIZE.match(line.strip())
        if m:   # the open (the solve) is over; the evaluation starts
            self.evaluating = True
            self.feedback.setProgressText('Evaluating %s x %s pixels' % m.groups())
            self.feedback.setProgress(50)
        elif self.evaluating and re.match(r'^\d', line):
            self._term(line)
        elif line.strip():
            self.feedback.pushDebugInfo(line)

    def _term(self, text):
        percent = _term_percent(text)
        if percent is not None and percent != self.percent:
            self.percent = percent
            self.feedback.setProgress(50 + percent / 2.0)

    def _stderr_line(self, line):
        m = MESSAGE.match(line)
        if m is None and self.after_failure and line.strip() and not line.startswith('TPS: '):
            self.failures[-1] += '\n' + line   # a message of several lines
            return
        self.after_failure = m is not None and m.group(1) == 'ERROR'
        if self.after_failure:
            self.failures.append(m.group(2))
        elif m:
            if m.group(2) == 'TPS is not a recognized driver':  # what -if TPS says
                self.no_driver = True
            self.feedback.pushWarning('GDAL: ' + m.group(2))
        elif line.startswith('TPS: '):
            self._debug(line[len('TPS: '):])
        elif line.strip():
            self.other.append(line)
            self.feedback.pushDebugInfo(line)

    def _debug(self, text):
        m = SOLVING.search(text)
        if m and not self.evaluating:
            if m.group(1) != self.stage:
                self.stage = m.group(1)
                self.feedback.setProgressText('Solving: %s' % self.stage)
            self.feedback.setProgress(int(m.group(2)) / 2.0)
            return
        m = LOCK_TAKEN.match(text)
        if m:
            self.lock = os.path.abspath(m.group(1))
        m = MODEL_FILE.search(text)
        if m:
            self.model_file = os.path.abspath(m.group(1))
        if SOLVED.search(text):
            self.feedback.pushInfo(text)
        else:
            self.feedback.pushDebugInfo(text)


class _Silent:
    """A feedback that hears nothing (the child's last words after Cancel)."""

    def __getattr__(self, name):
        return lambda *args, **kwargs: None


def _read(stream, name, out):
    """Whatever the child writes, as it comes (a thread per pipe)."""
    fd = stream.fileno()
    while True:
        data = os.read(fd, 65536)
        out.put((name, data or None))
        if not data:
            return


def _delete(driver_name, path):
    """Remove a partial output (and what its driver wrote beside it)."""
    driver = gdal.GetDriverByName(driver_name)
    gdal.PushErrorHandler('CPLQuietErrorHandler')
    try:
        deleted = driver is not None and driver.Delete(path) == gdal.CE_None
    except RuntimeError:
        deleted = False
    finally:
        gdal.PopErrorHandler()
    if not deleted and os.path.exists(path):
        os.remove(path)


def _remove_leftovers(lock, pid):
    """The model lock a killed child held, and its temporary model files.
    The next open would break the lock anyway (its holder is gone,
    docs/format.md): this only tidies the .tps file's folder. The lock goes
    only while it still names that child (another open may have taken it
    since); a race with one that takes it at this moment can only cost a
    second solve, as any broken lock."""
    try:
        with open(lock, encoding='utf-8', errors='replace') as f:
            record = f.read(4096)
    except OSError:
        record = ''
    if re.search(r'^pid=%d$' % pid, record, re.M) and \
            re.search(r'^host=%s$' % re.escape(socket.gethostname()), record, re.M):
        try:
            os.remove(lock)
        except OSError:
            pass
    model = lock[:-len('.lock')]
    for path in glob.glob(glob.escape(model) + '.tmp.%d.*' % pid):
        try:
            os.remove(path)
        except OSError:
            pass


def _summary(tps_path, open_options, model_file):
    """The TPS metadata of the model the child kept in `model_file`, read
    back here (MODEL_CACHE=READ_ONLY: a read of that file, never a
    solve, unless the file went in the meantime); None when there is none."""
    if not model_file or not os.path.isfile(model_file):
        return None
    gdal.PushErrorHandler('CPLQuietErrorHandler')
    try:
        ds = gdal.OpenEx(tps_path, gdal.OF_RASTER, allowed_drivers=['TPS'],
                         open_options=list(open_options) + ['MODEL_CACHE=READ_ONLY'])
    except RuntimeError:
        ds = None
    finally:
        gdal.PopErrorHandler()
    return (ds.GetMetadata('TPS') or {}) if ds is not None else None


def command(tps_path, output, driver_name, open_options, config):
    """The gdal_translate command line (nothing secret on it: see above)."""
    program = gdal_translate()
    if program is None:
        raise QgsProcessingException(NO_COMMAND)
    args = [program]
    for key, value in config.items():
        args += ['--config', key, value]
    args += ['-if', 'TPS', '-of', driver_name]
    for option in open_options:
        args += ['-oo', option]
    return args + [tps_path, output]


def translate(tps_path, output, driver_name, open_options, feedback, source=None,
              allow_prefix=None):
    """`gdal_translate` of `tps_path` to `output` with GDAL driver
    `driver_name`: the solve is the first half of the progress bar, the
    evaluation the second. Returns the TPS metadata of the model when it
    is kept in a file (else None)."""
    tps_path, output = os.path.abspath(tps_path), os.path.abspath(output)
    config = {'CPL_DEBUG': 'TPS'}
    for key in FORWARDED:
        value = gdal.GetConfigOption(key)
        if value is not None and value != os.environ.get(key):
            config[key] = value
    if gdal.GetConfigOption('TPS_PROGRESS_INTERVAL') is None:
        config['TPS_PROGRESS_INTERVAL'] = '0.5'
    if allow_prefix:
        allowed = allowed_sources_with(source, allow_prefix)
        if allowed:
            config['TPS_ALLOWED_SOURCES'] = allowed
            feedback.pushInfo('This run reads %s sources: TPS_ALLOWED_SOURCES=%s for it (a .tps '
                              'that reads them needs that setting when opened elsewhere)'
                              % (allow_prefix, allowed))
    args = command(tps_path, output, driver_name, open_options, config)
    feedback.pushCommandInfo(subprocess.list2cmdline(args))
    env = dict(os.environ)
    env.pop('CPL_LOG', None)   # GDAL's messages must reach stderr, where they are read
    if feedback.isCanceled():
        raise QgsProcessingException('Canceled before the solve; no raster was written')

    feedback.setProgressText('Solving the spline')
    child = _Child(feedback)
    lines = queue.Queue()
    try:
        proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, env=env,
                                creationflags=getattr(subprocess, 'CREATE_NO_WINDOW', 0))
    except OSError as e:
        raise QgsProcessingException('cannot run %s: %s' % (args[0], e))
    readers = [threading.Thread(target=_read, args=(getattr(proc, name), name, lines),
                                daemon=True) for name in ('stdout', 'stderr')]
    for reader in readers:
        reader.start()
    canceled = False
    try:
        open_pipes = 2
        while open_pipes or proc.poll() is None:
            if feedback.isCanceled():
                canceled = True
                break
            try:
                name, data = lines.get(timeout=POLL_S)
            except queue.Empty:
                continue
            open_pipes -= data is None
            child.feed(name, data)
        canceled = canceled or feedback.isCanceled()
    finally:
        # Only a canceled run (or an exception here) leaves a child running.
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(KILL_AFTER_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for reader in readers:
            reader.join(KILL_AFTER_S)
        proc.stdout.close()
        proc.stderr.close()

    if canceled:
        # What the child said before it went, unread: where its lock is.
        child.feedback = _Silent()
        while not lines.empty():
            child.feed(*lines.get_nowait())
        # A run canceled at any point leaves nothing of its own, even one
        # whose child finished as Cancel came (its model file, if written,
        # is complete and stays).
        if child.lock:
            _remove_leftovers(child.lock, proc.pid)
        if child.evaluating:
            _delete(driver_name, output)
            raise QgsProcessingException(
                'Canceled while evaluating; the partial %s was deleted' % output)
        raise QgsProcessingException('Canceled while solving; no raster was written')
    if proc.returncode != 0:
        if child.evaluating:
            _delete(driver_name, output)
        if child.no_driver:
            raise QgsProcessingException(
                '%s has no TPS driver, though the GDAL of this QGIS has: make the GDAL of '
                'the command line find gdal_TPS.so too (the same GDAL version; '
                'GDAL_DRIVER_PATH)' % args[0])
        lines_out = child.failures or child.other[-5:]
        raise QgsProcessingException(
            '\n'.join(lines_out) if lines_out else
            '%s stopped with %s and gave no reason' % (
                os.path.basename(args[0]), 'signal %d' % -proc.returncode
                if proc.returncode < 0 else 'exit code %d' % proc.returncode))
    feedback.setProgress(100)
    metadata = _summary(tps_path, open_options, child.model_file)
    if metadata:
        feedback.pushInfo('Solved: ' + ', '.join('%s=%s' % (k, metadata[k])
                                                 for k in REPORTED if k in metadata))
    return metadata
