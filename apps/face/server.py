"""Face recognition in the manner of OpenFace (seed 002): detect, align, embed, identify.

Detection: OpenCV's ResNet-10 SSD face detector.  Alignment and the 128-D
embedding: dlib's 5-point shape predictor and ResNet face model (the network
aligns each face chip from the 5 points).  Identities are enrolled by request
and kept in memory, so they are part of the state a migration must carry.
"""

import os
from pathlib import Path

import numpy as np

from mecserve import RequestError, Service, serve

MODELS = Path(os.environ.get("MEC_MODELS", "/srv/mec/assets"))
MATCH_DISTANCE = 0.6   # dlib's threshold for "same person"
MIN_CONFIDENCE = 0.5


class Face(Service):
    name = "face"

    def load(self):
        import cv2
        import dlib

        self.cv2 = cv2
        self.dlib = dlib
        self.detector = cv2.dnn.readNetFromCaffe(str(MODELS / "res10-face.prototxt"),
                                                 str(MODELS / "res10-face.caffemodel"))
        self.shape = dlib.shape_predictor(str(MODELS / "dlib-shape5.dat"))
        self.encoder = dlib.face_recognition_model_v1(str(MODELS / "dlib-face-resnet.dat"))
        self.enrolled: dict[str, list[np.ndarray]] = {}

    def faces(self, rgb: np.ndarray) -> list[dict]:
        cv2 = self.cv2
        h, w = rgb.shape[:2]
        blob = cv2.dnn.blobFromImage(cv2.resize(rgb[:, :, ::-1], (300, 300)), 1.0, (300, 300),
                                     (104.0, 177.0, 123.0))
        self.detector.setInput(blob)
        detections = self.detector.forward()[0, 0]
        found = []
        for det in detections:
            confidence = float(det[2])
            if confidence < MIN_CONFIDENCE:
                continue
            x1, y1, x2, y2 = (det[3:7] * np.array([w, h, w, h])).round().astype(int)
            x1, y1, x2, y2 = max(0, x1), max(0, y1), min(w - 1, x2), min(h - 1, y2)
            if x2 <= x1 or y2 <= y1:
                continue
            shape = self.shape(rgb, self.dlib.rectangle(int(x1), int(y1), int(x2), int(y2)))
            embedding = np.array(self.encoder.compute_face_descriptor(rgb, shape))
            found.append({"box": [int(x1), int(y1), int(x2), int(y2)], "confidence": round(confidence, 4),
                          "embedding": embedding})
        return found

    def identify(self, embedding: np.ndarray) -> tuple[str | None, float | None]:
        best, best_distance = None, None
        for name, known in self.enrolled.items():
            distance = float(np.min(np.linalg.norm(np.stack(known) - embedding, axis=1)))
            if best_distance is None or distance < best_distance:
                best, best_distance = name, distance
        if best_distance is None or best_distance > MATCH_DISTANCE:
            return None, best_distance
        return best, best_distance

    def handle(self, op, header, payload):
        if op not in ("task", "enroll"):
            raise RequestError("unknown_op", f"face serves ops 'task' and 'enroll', not {op!r}")
        faces = self.faces(self.decode_image(payload))
        if op == "enroll":
            name = header.get("name")
            if not isinstance(name, str) or not 0 < len(name) <= 64:
                raise RequestError("bad_request", "enroll needs a 'name' of 1-64 characters")
            if not faces:
                raise RequestError("no_face", "no face found in the enrolment image")
            largest = max(faces, key=lambda f: (f["box"][2] - f["box"][0]) * (f["box"][3] - f["box"][1]))
            self.enrolled.setdefault(name, []).append(largest["embedding"])
            return {"enrolled": name, "samples": len(self.enrolled[name])}
        result = []
        for face in faces:
            identity, distance = self.identify(face["embedding"])
            result.append({"box": face["box"], "confidence": face["confidence"], "identity": identity,
                           "distance": None if distance is None else round(distance, 4),
                           "embedding": [round(float(v), 5) for v in face["embedding"]]})
        return {"faces": result}

    def snapshot(self):
        return {"enrolled": {name: len(samples) for name, samples in self.enrolled.items()}}


if __name__ == "__main__":
    serve(Face())
