"""Faces: dlib landmarks and boxes (the `faces` extra), the face crop, and masks drawn onto faces."""
