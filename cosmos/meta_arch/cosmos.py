"""COSMOS meta-architecture: CLIP loss on global crops × text crops plus cross-modal
self-distillation against an EMA teacher (arXiv 2412.01814, Sec. 3; ExplainableML/cosmos,
``src/open_clip/model.py::CLIP.forward`` and ``src/open_clip/loss.py``)."""
from __future__ import annotations

from typing import Any, Dict, List, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from cosmos.ema.teacher import make_teacher
from cosmos.models.attention_source import AttentionSource
from cosmos.models.cross_attention import cross_modal_embedding
from cosmos.registry import META_ARCHS
from cosmos.utils.errors import ConfigError


def caption_major(tokens: torch.Tensor) -> torch.Tensor:
    """(B, n, L) → (n·B, L), rows k·B … k·B+B−1 holding caption k of every sample."""
    return tokens.transpose(0, 1).reshape(-1, tokens.shape[-1])


def padding_mask(tokens: torch.Tensor) -> torch.Tensor:
    """(B, L) True at positions after each sequence's EOT (the argmax token)."""
    eot = tokens.argmax(dim=-1, keepdim=True)
    return torch.arange(tokens.shape[-1], device=tokens.device)[None, :] > eot


def trim_padding(rows: torch.Tensor) -> torch.Tensor:
    """(N, L) token ids → (N, L') cut after the last EOT (argmax) of any row.

    One host synchronisation (the length), the price of a shorter sequence.
    """
    return rows[:, : int(rows.argmax(dim=-1).max()) + 1]


@META_ARCHS.register(name="cosmos")
class COSMOS(nn.Module):
    """Student on all crops and captions, teacher (EMA copy) on the global crops and captions.

    Batch keys: ``global_crops`` list of G tensors (B, 3, g, g); ``local_crops`` list of L
    tensors (B, 3, l, l) (may be empty); ``tokens`` (B, n, T) with the n_global global captions
    first. Returns ``clip_loss``, ``distill_loss`` and the weighted total ``loss``.

    The model holds only what its objective uses (under DDP every parameter needs a gradient):
    the student must be built with the same ``cross_attention`` / ``distillation`` flags (the
    config passes them on), and without distillation there is no teacher (and no EMA).

    Args:
        mask_text_padding: hide text padding from cross-attention keys (off = official).
        cross_attention: off = distil the student's own normalized embeddings (no poolers and
            no token mappings in the student).
        distillation: off = CLIP loss on the global crops only (no teacher, no cross-modal
            modules, no ``distill_logit_scale``).
        num_global_captions: captions that go through the teacher (official: 2).
        trim_text_padding: run captions through the text tower cut to their group's longest
            caption (the causal tower's pooled EOT embedding does not see later positions, so
            this is exact). With ``mask_text_padding=True`` the groups are the global and the
            local captions; without it (official: caption 1's padded positions are
            cross-attention keys) caption 1 keeps its full context and the groups are the
            other global captions and the local captions. The teacher's global captions are
            trimmed to their longest too.
    """

    def __init__(self, student: nn.Module, clip_loss: nn.Module, distill_loss: nn.Module,
                 clip_weight: float = 1.0, distill_weight: float = 1.0,
                 mask_text_padding: bool = False, cross_attention: bool = True,
                 distillation: bool = True, num_global_captions: int = 2,
                 trim_text_padding: bool = False) -> None:
        super().__init__()
        self.trim_text_padding = trim_text_padding
        _check_student(student, cross_attention, distillation)
        self.student = student
        if distillation:  # an ablation without distillation has no teacher at all
            self.teacher = make_teacher(student)
        self.clip_loss, self.distill_loss = clip_loss, distill_loss
        self.clip_weight, self.distill_weight = float(clip_weight), float(distill_weight)
        self.mask_text_padding, self.cross_attention = mask_text_padding, cross_attention
        self.distillation = distillation
        self.num_global_captions = num_global_captions

    @property
    def uses_cross_attention(self) -> bool:
        """The distillation compares cross-modal embeddings (poolers and token mappings)."""
        return self.distillation and self.cross_attention

    def train(self, mode: bool = True) -> "COSMOS":
        super().train(mode)
        if self.distillation:
            self.teacher.eval()  # the teacher never trains
        return self

    # -- student -----------------------------------------------------------------------
    def _encode_images(self, global_crops: Sequence[torch.Tensor],
                       local_crops: Sequence[torch.Tensor]) -> Tuple[torch.Tensor, torch.Tensor]:
        """One tower pass per resolution → pooled (n_crops·B, D) crop-major, G1 patch tokens.

        Without distillation the local crops (which feed only the distillation) are not encoded.
        """
        visual = self.student.encoder.visual
        batch = global_crops[0].shape[0]
        pooled, tokens = visual(torch.cat(list(global_crops)))
        if local_crops and self.distillation:
            pooled = torch.cat([pooled, visual(torch.cat(list(local_crops)))[0]])
        return pooled, tokens[:batch]

    def _encode_texts(self, tokens: torch.Tensor
                      ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Pooled (n·B, D) caption-major, plus caption 1's token features (B, T, W) and ids
        (B, T)."""
        text = self.student.encoder.text
        batch = tokens.shape[0]
        rows = caption_major(tokens)
        if not self.trim_text_padding:
            pooled, feats = text(rows)
            return pooled, feats[:batch], rows[:batch]
        split = self.num_global_captions * batch
        if self.mask_text_padding:  # caption 1's padding is masked: trim it with its group
            groups, first_full = (rows[:split], rows[split:]), None
        else:  # official: caption 1's padded positions are keys, it keeps its full context
            groups, first_full = (rows[batch:split], rows[split:]), rows[:batch]
        pooled, first = [], None
        if first_full is not None:
            p, feats = text(first_full)
            pooled.append(p)
            first = (feats, first_full)
        for group in groups:
            if group.shape[0] == 0:
                continue
            group = trim_padding(group)
            p, feats = text(group)
            pooled.append(p)
            first = first if first is not None else (feats[:batch], group[:batch])
        return torch.cat(pooled), first[0], first[1]

    def student_outputs(self, global_crops: Sequence[torch.Tensor],
                        local_crops: Sequence[torch.Tensor],
                        tokens: torch.Tensor) -> Dict[str, torch.Tensor]:
        """Student features, as the official ``CLIP.forward(images, text, batch_size)`` forms them.

        Returns normalized ``image`` (n_img·B, D), ``text`` (n_txt·B, D), and the cross-modal
        ``img_cross`` (n_img·B, D), ``txt_cross`` (n_txt·B, D), all crop-/caption-major.
        Without distillation: ``image`` of the global crops and ``text`` only.
        """
        s = self.student
        batch, n_txt = tokens.shape[0], tokens.shape[1]
        image, patches = self._encode_images(global_crops, local_crops)
        n_img = image.shape[0] // batch
        text, caption1_feats, caption1_ids = self._encode_texts(tokens)
        out = {"image": F.normalize(image, dim=-1), "text": F.normalize(text, dim=-1)}
        if not self.distillation:
            return out
        if not self.cross_attention:
            out["img_cross"], out["txt_cross"] = out["image"], out["text"]
            return out
        caption1 = s.text_token_mapping(caption1_feats)                   # (B, T, D)
        patches = s.image_token_mapping(patches)                          # (B, N, D)
        mask = padding_mask(caption1_ids) if self.mask_text_padding else None
        # each sample's n queries attend to that sample's keys in one call (no tiling)
        img_q = image.view(n_img, batch, -1).transpose(0, 1)              # (B, n_img, D)
        txt_q = text.view(n_txt, batch, -1).transpose(0, 1)               # (B, n_txt, D)
        img_cross = cross_modal_embedding(s.image_cross_pooler, img_q, caption1, mask)
        txt_cross = cross_modal_embedding(s.text_cross_pooler, txt_q, patches)
        out["img_cross"] = img_cross.transpose(0, 1).reshape(n_img * batch, -1)
        out["txt_cross"] = txt_cross.transpose(0, 1).reshape(n_txt * batch, -1)
        return out

    @torch.no_grad()
    def teacher_outputs(self, global_crops: Sequence[torch.Tensor], tokens: torch.Tensor
                        ) -> Dict[str, torch.Tensor]:
        """Teacher's normalized embeddings of the global crops and the global captions."""
        enc = self.teacher.encoder
        global_rows = caption_major(tokens[:, : self.num_global_captions])
        if self.trim_text_padding:  # only pooled embeddings are used: exact
            global_rows = trim_padding(global_rows)
        return {"image": enc.encode_image(torch.cat(list(global_crops)), normalize=True),
                "text": enc.encode_text(global_rows, normalize=True)}

    # -- losses ------------------------------------------------------------------------
    def forward_explicit(self, global_crops: Sequence[torch.Tensor],
                         local_crops: Sequence[torch.Tensor],
                         tokens: torch.Tensor) -> Dict[str, torch.Tensor]:
        """Loss terms for explicit inputs (for comparisons with the official implementation)."""
        batch = tokens.shape[0]
        n_global = len(global_crops)
        s = self.student_outputs(global_crops, local_crops, tokens)
        scale = self.student.encoder.logit_scale.exp()
        clip = self.clip_loss(_blocks(s["image"], batch)[:n_global], _blocks(s["text"], batch),
                              scale)
        losses = {"clip_loss": clip}
        total = self.clip_weight * clip
        if self.distillation:
            t = self.teacher_outputs(global_crops, tokens)
            distill = self.distill_loss(_blocks(s["img_cross"], batch),
                                        _blocks(s["txt_cross"], batch),
                                        _blocks(t["image"], batch), _blocks(t["text"], batch),
                                        self.student.distill_logit_scale.exp())
            losses["distill_loss"] = distill
            total = total + self.distill_weight * distill
        losses["loss"] = total
        return losses

    def forward(self, batch: Dict) -> Dict[str, torch.Tensor]:
        if "global_crops" not in batch and ("global_crops_uint8" in batch
                                            or "image_uint8" in batch):
            raise ConfigError("the batch holds uint8 crops (image_crops.cosmos_multicrop_fast) "
                              "but no batch augmentation made them model inputs: set "
                              "dataloader.augment=batch_augments.dino_photometric")
        return self.forward_explicit(batch["global_crops"], batch.get("local_crops") or [],
                                     batch["tokens"])

    # -- trainer / evaluation interface ------------------------------------------------
    def ema_parameters(self) -> Tuple[List[torch.Tensor], List[torch.Tensor]]:
        """(teacher, student) parameters, aligned; two empty lists without a teacher."""
        if not self.distillation:
            return [], []
        return list(self.teacher.parameters()), list(self.student.parameters())

    def encoders(self) -> Dict[str, nn.Module]:
        if not self.distillation:
            return {"student": self.student.encoder}
        return {"student": self.student.encoder, "teacher": self.teacher.encoder}

    def extra_metrics(self) -> Dict[str, float]:
        metrics = {"logit_scale": float(self.student.encoder.logit_scale.detach().exp())}
        if self.distillation:
            metrics["distill_logit_scale"] = float(self.student.distill_logit_scale.detach().exp())
        return metrics

    def checkpoint_metadata(self) -> Dict[str, Any]:
        """What a checkpoint of this model holds (saved beside its weights, checked on load)."""
        return {"cross_attention": self.uses_cross_attention, "distillation": self.distillation,
                "teacher": self.distillation}

    def attention_sources(self) -> Dict[str, AttentionSource]:
        """Per encoder, the modules its attention maps are read from (the figures): the
        student's or the teacher's cross poolers."""
        sources = {}
        for name, enc in self.encoders().items():
            unit = getattr(self, name)
            if unit.has_cross_attention:
                sources[name] = AttentionSource(enc, unit, self.mask_text_padding, "")
            else:
                flag = "cross_attention" if not self.cross_attention else "distillation"
                sources[name] = AttentionSource(
                    enc, None, self.mask_text_padding,
                    f"the model was trained with model.{flag}=False (no cross-attention modules)")
        return sources


def _check_student(student: nn.Module, cross_attention: bool, distillation: bool) -> None:
    """One-line ConfigError unless ``student`` holds exactly the parts the flags use."""
    needs = {"cross-attention poolers and token mappings": cross_attention and distillation,
             "distill_logit_scale": distillation}
    has = {"cross-attention poolers and token mappings": hasattr(student, "image_cross_pooler"),
           "distill_logit_scale": hasattr(student, "distill_logit_scale")}
    for part, needed in needs.items():
        if needed != has[part]:
            raise ConfigError(
                f"COSMOS(cross_attention={cross_attention}, distillation={distillation}) "
                f"{'needs' if needed else 'does not use'} the {part}, which the student "
                f"{'lacks' if needed else 'holds'}: build the student with the same flags "
                "(CosmosStudent(cross_attention=..., distillation=...))")


def _blocks(x: torch.Tensor, batch: int) -> List[torch.Tensor]:
    """(k·B, D) → k blocks of (B, D)."""
    return list(x.split(batch))
