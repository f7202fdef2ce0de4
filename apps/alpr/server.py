"""Licence plate recognition (seed 000's ALPR workload).

OpenALPR is not packaged offline; RapidOCR's text detection + recognition
models ship inside its wheel.  The whole image is read, and strings that look
like plates (4-10 letters/digits, at least one of each) are kept.
"""

import os
import re

from mecserve import RequestError, Service, serve, sleeping_thread_pools

PLATE = re.compile(r"^(?=.*[A-Z])(?=.*[0-9])[A-Z0-9]{4,10}$")


def plate_text(raw: str) -> str | None:
    text = re.sub(r"[^A-Z0-9]", "", raw.upper())
    return text if PLATE.match(text) else None


def _sleeping_thread_pools():
    """RapidOCR's onnxruntime sessions with threads that sleep between tasks, as detect's
    (``mecserve.sleeping_thread_pools``).  RapidOCR has no option for it, so its session
    options are wrapped."""
    from rapidocr_onnxruntime.utils import infer_engine

    make = infer_engine.OrtInferSession._init_sess_opts

    def options(config):
        return sleeping_thread_pools(make(config))

    infer_engine.OrtInferSession._init_sess_opts = staticmethod(options)


class Alpr(Service):
    name = "alpr"

    def load(self):
        from rapidocr_onnxruntime import RapidOCR

        _sleeping_thread_pools()
        self.ocr = RapidOCR(det_limit_type="max", det_limit_side_len=640,
                            intra_op_num_threads=int(os.environ.get("OMP_NUM_THREADS", "2")),
                            inter_op_num_threads=1)

    def handle(self, op, header, payload):
        if op != "task":
            raise RequestError("unknown_op", f"alpr serves op 'task', not {op!r}")
        image = self.decode_image(payload)
        found, _ = self.ocr(image[:, :, ::-1].copy(), use_cls=False)
        plates = []
        for box, raw, score in found or []:
            text = plate_text(raw)
            if text:
                xs, ys = [p[0] for p in box], [p[1] for p in box]
                plates.append({"text": text, "confidence": round(float(score), 4),
                               "box": [round(min(xs)), round(min(ys)), round(max(xs)), round(max(ys))]})
        plates.sort(key=lambda p: -p["confidence"])
        return {"plates": plates}


if __name__ == "__main__":
    serve(Alpr())
