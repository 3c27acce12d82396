"""Where tf.data's record readers are, so a bad record is named without rescanning.

tf.data reports corrupt bytes ("corrupted record at 1234") or a record that
does not parse without the file. A `ReadPositions` tags every record with
(file, record index) as it is read and keeps, in variables the pipeline
updates:

* per opening of a file by the reader, the last record read from it and
  when: corrupt bytes lie at the next index of one of them, most likely of
  one read from lately;
* per position of the stream handed to parsing, its (file, record) and
  whether it parsed: a record that fails to parse is one that did not.

Readers run ahead of the consumer, and past an error (a parallel map keeps
pulling), so these name a few candidates rather than one. On an error
`locate` reads only those (one record each) and returns `records.RecordError`
naming the file, record and reason, or None when the error is not a record's
(every candidate reads and parses fine). The variables are not part of a
saved iterator (`pipeline.TrainStream.save`): after a restore, a file that was
open at the save is not tracked until it is opened again, and corrupt bytes
in it are raised unnamed.

Usage inside a pipeline::

    positions = ReadPositions(files)
    ds = positions.read(file_order)                 # (file, record, serialized)
    ...                                             # filter, shuffle
    ds = ds.enumerate().map(positions.note_parsing) # (position, (file, record, serialized))
    # parse, then positions.note_parsed(position, parsed) in the same function
"""

from __future__ import annotations

from collections.abc import Sequence

import tensorflow as tf

from vtlearn.data import records

# Stream positions remembered between entering and leaving parsing: more than
# a parallel map holds in flight.
_RING = 4096
# File openings remembered: more than an interleave holds open and reads ahead.
_OPENINGS = 1024


class ReadPositions:
    """(file, record) of what the readers of `files` read; see the module doc.

    Args:
      files: the files, indexed as in `read`.
    """

    def __init__(self, files: Sequence[str]):
        self.files = list(files)
        none = tf.constant(-1, tf.int64)
        # Per opening of a file (by its number modulo _OPENINGS): the file, the
        # last record read from it and when (the count of records read then).
        self._openings = tf.Variable(tf.fill([_OPENINGS, 3], none), trainable=False)
        self._num_opened = tf.Variable(tf.zeros([], tf.int64), trainable=False)
        self._num_read = tf.Variable(tf.zeros([], tf.int64), trainable=False)
        # Per stream position (modulo _RING): position, file, record, parsed (0/1).
        self._parsing = tf.Variable(tf.fill([_RING, 4], none), trainable=False)

    def read(self, file_order: tf.data.Dataset, cycle_length: int = 1,
             parallel: bool = False) -> tf.data.Dataset:
        """(file int64, record int64, serialized string) of the files in
        `file_order` (a dataset of int64 indices into `files`), interleaved."""
        names = tf.constant(self.files)

        def one_file(opening, file):
            reader = tf.data.TFRecordDataset(tf.gather(names, file)).enumerate()
            return reader.map(lambda record, raw: (opening, file, record, raw))

        ds = file_order.map(self._note_opened)
        ds = ds.interleave(one_file, cycle_length=cycle_length,
                           **dict(num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
                           if parallel else {})
        return ds.map(self._note_read)

    def _note_opened(self, file):
        opening = self._num_opened.assign_add(1) - 1
        entry = tf.stack([file, tf.constant(-1, tf.int64), tf.constant(-1, tf.int64)])
        with tf.control_dependencies([self._openings.scatter_nd_update(
                [[opening % _OPENINGS]], [entry])]):
            return tf.identity(opening), file

    def _note_read(self, opening, file, record, raw):
        entry = tf.stack([record, self._num_read.assign_add(1)])
        with tf.control_dependencies([self._openings.scatter_nd_update(
                [[opening % _OPENINGS, 1], [opening % _OPENINGS, 2]], entry)]):
            return tf.identity(file), record, raw

    def note_parsing(self, position, element):
        """Remembers which record stream `position` holds; `element` is a
        tuple (file, record, ...) as `read` gives (returned unchanged)."""
        entry = tf.stack([position, element[0], element[1], tf.constant(0, tf.int64)])
        with tf.control_dependencies([self._parsing.scatter_nd_update(
                [[position % _RING]], [entry])]):
            return tf.identity(position), element

    def note_parsed(self, position, parsed) -> tf.Tensor:
        """Marks stream `position` parsed once `parsed` (its parsed tensors)
        exist; returns `position`."""
        with tf.control_dependencies(tf.nest.flatten(parsed)):
            update = self._parsing.scatter_nd_update([[position % _RING, 3]], [1])
        with tf.control_dependencies([update]):
            return tf.identity(position)

    def locate(self, error: Exception, **parse_kwargs) -> records.RecordError | None:
        """The bad record behind `error` from tf.data, read from the positions.

        Args:
          error: the tf.errors.OpError the iterator raised.
          **parse_kwargs: as `records.parse_example`.
        """
        try:
            if isinstance(error, tf.errors.DataLossError):
                self._read_after_last_read()
            elif isinstance(error, tf.errors.InvalidArgumentError):
                self._parse_unparsed(parse_kwargs)
        except records.RecordError as e:
            return e
        return None

    def _read_after_last_read(self) -> None:
        """Reads the record after the last one read in each opening, those
        read from most recently first (openings not read from yet before
        them); raises RecordError at a corrupt one."""
        openings = [(int(f), int(last), int(when)) for f, last, when in self._openings.numpy()
                    if f >= 0]
        for file, last, _ in sorted(openings, key=lambda o: o[2] if o[2] >= 0 else 2**62,
                                    reverse=True):
            records.read_record(self.files[file], last + 1)

    def _parse_unparsed(self, parse_kwargs: dict) -> None:
        """Parses the records handed to parsing that did not parse, in stream
        order; raises RecordError at the first that fails."""
        for position, file, record, parsed in sorted(self._parsing.numpy().tolist()):
            if position >= 0 and not parsed:
                path = self.files[file]
                raw = records.read_record(path, record)
                if raw is not None:
                    records.parse_checked(raw, f"{path}: record {record}", **parse_kwargs)
