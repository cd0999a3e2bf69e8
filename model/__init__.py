"""Everything inference needs: decoding, preprocessing, the predictor, Grad-CAM and the
shipped model."""
