"""The anbo wire contract, version 1: topics and payloads, decoded strictly.

Pure code: no I/O, no clock reads (``now`` is an argument), no logging. Every
way a message can be wrong is a distinct :class:`Reason`, whose value is a
stable, lowercase string meant to be a Prometheus label value; the human detail
(naming the field) goes with it in :class:`DecodeError` for the logs.

The normative description is ``docs/telemetry-contract.md``; this module is its
executable form. The hot paths (:meth:`TopicParser.parse`, :func:`decode` of a
small JSON reading, a binary sample block) are written to cost a few
microseconds: ``json.loads`` then tight ``type() is`` checks, precompiled
regular expressions, ``np.frombuffer`` plus one conversion for samples, and no
Python loops over samples.

The package, one file per concern: :mod:`~monitor.wire.contract` (version, header,
formats, limits, failure reasons), :mod:`~monitor.wire.topics`,
:mod:`~monitor.wire.decode`, :mod:`~monitor.wire.encode` and
:mod:`~monitor.wire.sequence`. Import from ``monitor.wire``: the public names are here.
"""

from __future__ import annotations

from monitor.wire.contract import (
    DEFAULT_LIMITS as DEFAULT_LIMITS,
)
from monitor.wire.contract import (
    ENDPOINT_STATION as ENDPOINT_STATION,
)
from monitor.wire.contract import (
    HEADER as HEADER,
)
from monitor.wire.contract import (
    HEADER_SIZE as HEADER_SIZE,
)
from monitor.wire.contract import (
    JSON_CONTENT_TYPE as JSON_CONTENT_TYPE,
)
from monitor.wire.contract import (
    L16_MEDIA_TYPE as L16_MEDIA_TYPE,
)
from monitor.wire.contract import (
    MAGIC as MAGIC,
)
from monitor.wire.contract import (
    MAX_CHANNELS as MAX_CHANNELS,
)
from monitor.wire.contract import (
    MAX_INFO_LEN as MAX_INFO_LEN,
)
from monitor.wire.contract import (
    MAX_RATE as MAX_RATE,
)
from monitor.wire.contract import (
    SAMPLES_MEDIA_TYPE as SAMPLES_MEDIA_TYPE,
)
from monitor.wire.contract import (
    SEQ_MAX as SEQ_MAX,
)
from monitor.wire.contract import (
    WIRE_VERSION as WIRE_VERSION,
)
from monitor.wire.contract import (
    DecodeError as DecodeError,
)
from monitor.wire.contract import (
    Limits as Limits,
)
from monitor.wire.contract import (
    Reason as Reason,
)
from monitor.wire.contract import (
    SampleFormat as SampleFormat,
)
from monitor.wire.decode import (
    MAX_CONTENT_TYPE_LEN as MAX_CONTENT_TYPE_LEN,
)
from monitor.wire.decode import (
    Batch as Batch,
)
from monitor.wire.decode import (
    Payload as Payload,
)
from monitor.wire.decode import (
    Readings as Readings,
)
from monitor.wire.decode import (
    SampleBlock as SampleBlock,
)
from monitor.wire.decode import (
    SampleSpec as SampleSpec,
)
from monitor.wire.decode import (
    decode as decode,
)
from monitor.wire.decode import (
    parse_content_type as parse_content_type,
)
from monitor.wire.encode import (
    encode_batch as encode_batch,
)
from monitor.wire.encode import (
    encode_block_v5 as encode_block_v5,
)
from monitor.wire.encode import (
    encode_block_v311 as encode_block_v311,
)
from monitor.wire.encode import (
    encode_readings as encode_readings,
)
from monitor.wire.encode import (
    frame_block_v5 as frame_block_v5,
)
from monitor.wire.encode import (
    frame_block_v311 as frame_block_v311,
)
from monitor.wire.encode import (
    sample_width as sample_width,
)
from monitor.wire.sequence import (
    SeqEvent as SeqEvent,
)
from monitor.wire.sequence import (
    SeqResult as SeqResult,
)
from monitor.wire.sequence import (
    SeqTracker as SeqTracker,
)
from monitor.wire.topics import (
    SEGMENT_PATTERN as SEGMENT_PATTERN,
)
from monitor.wire.topics import (
    SEGMENT_RE as SEGMENT_RE,
)
from monitor.wire.topics import (
    EndpointTopic as EndpointTopic,
)
from monitor.wire.topics import (
    StationTopic as StationTopic,
)
from monitor.wire.topics import (
    TopicParser as TopicParser,
)
from monitor.wire.topics import (
    is_segment as is_segment,
)
